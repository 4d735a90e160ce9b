"""Bad input through the real command lines: ``python train.py ...`` and ``python search.py ...``.

Every case must exit with status 2, print one ``error: ...`` line naming the problem (no
traceback), and leave nothing behind (no run directory, checkpoint, results.json or --out folder).

Each case runs the real script file as ``__main__`` in its own process. Starting Python with
torch and Lightning costs seconds, so the processes are forked from a multiprocessing
*forkserver* that has imported them once (and never computed anything, so forking is safe);
two cases also run as plain ``subprocess`` calls to show that the two ways agree.
"""

from __future__ import annotations

import gzip
import multiprocessing as mp
import os
import runpy
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
import torch

from nas_lightning.spaces import NB201
from tests.conftest import tiny_run

pytestmark = pytest.mark.slow  # starts processes or trains

REPO = Path(__file__).resolve().parents[1]
TRAIN, SEARCH = str(REPO / "train.py"), str(REPO / "search.py")
TINY = tiny_run({"data.val_tasks": "[]", "data.target_tasks": "[]", "data.support": 10, "data.query": 10,
                 "data.val_query": 20, "data.val_episodes": 1, "data.steps_per_epoch": 1, "trainer.max_epochs": 1})


def _archs(n: int, offset: int = 0) -> list[str]:
    return [NB201.to_string(i) for i in range(offset, offset + 97 * n, 97)]


def _csv(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("arch", "val_acc")) -> None:
    path.write_text("\n".join(",".join(r) for r in [list(header), *rows]) + "\n")


def _ckpt(path: Path, **hp) -> None:
    """A checkpoint shaped like train.py's, with the model built from ``hp``."""
    from nas_lightning.models.module import MetaPredictor

    module = MetaPredictor(**{k: v for k, v in hp.items() if k != "space"})
    hparams = dict(module.hparams)
    hparams.update(hp)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams, "loops": {}, "epoch": 0,
                "pytorch-lightning_version": lightning.__version__,
                "global_step": 0, "NASTaskDataModule": {"oracles": {}, "fed_back": {}, "seen_tasks": []}}, path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Broken (and a few sound) input files, made once."""
    d = tmp_path_factory.mktemp("inputs")
    good = _archs(30)
    _csv(d / "good.csv", [[a, f"{70 + i / 10:.2f}"] for i, a in enumerate(good)])
    _csv(d / "malformed.csv", [[a, "1.0"] for a in good[:5]] + [["|nor_conv_3x3~0|+|bogus~0|skip_connect~1|+|none~0|none~1|none~2|", "2.0"]])
    (d / "empty.csv").write_text("")
    _csv(d / "header_only.csv", [])
    _csv(d / "no_arch.csv", [["x", "1.0"]], header=("name", "val_acc"))
    _csv(d / "nan.csv", [[a, "nan" if i == 3 else "1.0"] for i, a in enumerate(good)])
    _csv(d / "text.csv", [[a, "fast" if i == 3 else "1.0"] for i, a in enumerate(good)])
    _csv(d / "dup.csv", [[a, "1.0"] for a in good + good[:1]])
    # NAS-Bench-201's vocabulary in a 3-node cell: another search space
    _csv(d / "foreign.csv", [[a, "1.0"] for a in good[:5]] + [["|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|", "2.0"]])
    (d / "garbage.csv.gz").write_bytes(bytes(range(256)) * 8)
    with gzip.open(d / "ok.csv.gz", "wt") as f:
        f.write("arch,val_acc\n" + "".join(f"{a},1.0\n" for a in good))
    (d / "a_folder.csv").mkdir()
    (d / "support_malformed.txt").write_text(f"{good[0]}\n|nor_conv_3x3~0|+|what~0|none~1|+|none~0|none~1|none~2|\n")
    (d / "support_foreign.txt").write_text(f"{good[0]}\n{good[1]}\n{NB201.to_string(1)}\n")  # 1 is not in good.csv
    (d / "garbage.ckpt").write_bytes(bytes(range(256)) * 16)
    torch.save({"weights": torch.zeros(3)}, d / "plain.ckpt")
    _ckpt(d / "search.ckpt", hidden=16, context=8)
    _ckpt(d / "other_space.ckpt", hidden=16, context=8, space="nb101")
    _ckpt(d / "other_encoding.ckpt", hidden=16, context=8, encoding="onehot")
    _ckpt(d / "unknown_encoding.ckpt", hidden=16, context=8)
    ck = torch.load(d / "unknown_encoding.ckpt", weights_only=False)
    ck["hyper_parameters"]["encoding"] = "zero-cost-proxies"
    torch.save(ck, d / "unknown_encoding.ckpt")
    from PIL import Image

    (d / "no_images").mkdir()
    for name, classes, sizes in (("one_class", ("cat",), (8, 8)), ("mixed_sizes", ("cat", "dog"), (8, 12))):
        for c in classes:
            (d / name / c).mkdir(parents=True)
            for i, side in enumerate(sizes):
                Image.new("RGB", (side, side), (i * 40, 0, 0)).save(d / name / c / f"{i}.png")
    ck = torch.load(d / "search.ckpt", weights_only=False)
    ck["NASTaskDataModule"]["oracles"] = {"nb201/ImageNet16-120/val_acc": {}}
    torch.save(ck, d / "other_target.ckpt")
    return d


# (id, script, arguments with {in} for the inputs folder, what the message must name)
TRAIN_CASES = [
    ("unknown-spec", ["--data.train_tasks", "[nb201-cifar10-val_acc]"], "unknown task spec"),
    ("unknown-dataset", ["--data.train_tasks", "[nb201/mnist/val_acc]"], "unknown NB201 dataset"),
    ("unknown-metric", ["--data.train_tasks", "[nb201/cifar10/top1]"], "unknown nb201 metric"),
    ("unknown-val-spec", ["--data.val_tasks", "[cifar10]"], "unknown task spec"),
    ("malformed-arch", ["--data.train_tasks", "[csv:{in}/malformed.csv]"], "unknown op 'bogus'"),
    ("csv-missing", ["--data.train_tasks", "[csv:{in}/nowhere.csv]"], "does not exist"),
    ("csv-unreadable-gz", ["--data.train_tasks", "[csv:{in}/garbage.csv.gz]"], "unreadable"),
    ("csv-folder", ["--data.train_tasks", "[csv:{in}/a_folder.csv]"], "unreadable"),
    ("csv-empty", ["--data.train_tasks", "[csv:{in}/empty.csv]"], "is empty"),
    ("csv-header-only", ["--data.train_tasks", "[csv:{in}/header_only.csv]"], "no rows"),
    ("csv-no-arch", ["--data.train_tasks", "[csv:{in}/no_arch.csv]"], "no 'arch' column"),
    ("csv-nan", ["--data.train_tasks", "[csv:{in}/nan.csv]"], "not finite"),
    ("csv-text", ["--data.train_tasks", "[csv:{in}/text.csv]"], "not a number"),
    ("csv-duplicate", ["--data.train_tasks", "[csv:{in}/dup.csv]"], "more than once"),
    ("csv-foreign-space", ["--data.train_tasks", "[csv:{in}/foreign.csv]"], "nodes"),
    ("csv-glob-nothing", ["--data.train_tasks", "[csv:{in}/zz*.csv]"], "no file matches"),
    ("csv-no-column", ["--data.train_tasks", "[csv:{in}/good.csv#latency]"], "no column 'latency'"),
    ("support-too-large", ["--data.support", "20000"], "data.support"),
    ("query-too-large", ["--data.train_tasks", "[csv:{in}/good.csv]", "--data.support", "5", "--data.query", "40"],
     "data.query"),
    ("support-below-2", ["--data.support", "1"], "data.support must be"),
    ("meta-batch-zero", ["--data.meta_batch", "0"], "data.meta_batch"),
    ("budget-zero", ["--data.target_tasks", "[nb201/ImageNet16-120/val_acc]", "--data.target_budget", "0"], "target_budget"),
    ("train-target-missing-folder", ["--data.target_tasks", "[train:imagefolder={in}/nowhere]"], "nowhere"),
    ("train-target-recipe", ["--data.target_tasks", "[train:digits]", "--data.oracle.recipe.lr", "-1"], "lr"),
    ("budget-negative", ["--data.target_tasks", "[nb201/ImageNet16-120/val_acc]", "--data.target_budget", "-3"],
     "target_budget"),
    ("target-also-train", ["--data.target_tasks", "[nb201/cifar10/val_acc]"], "one role"),
    ("val-also-train", ["--data.val_tasks", "[nb201/cifar10/val_acc]"], "one role"),
    ("unknown-predictor", ["--model.predictor", "rnn"], "unknown predictor"),
    ("unknown-encoding", ["--model.encoding", "zcp"], "unknown encoding"),
    ("unknown-trainer-strategy", ["--trainer.strategy", "bogus"], "bogus"),
    ("meta-batch-below-devices", ["--trainer.strategy", "ddp", "--trainer.devices", "3", "--trainer.accelerator", "cpu"],
     "data.meta_batch=2"),
    ("monitor-target-metric", ["--checkpoint.monitor", "search/spearman"], "whole target table"),
    ("ckpt-missing", ["--ckpt_path", "{in}/nowhere.ckpt"], "no such checkpoint"),
    ("ckpt-last-missing", ["--ckpt_path", "last"], "no runs/default/checkpoints/last.ckpt"),
    ("ckpt-corrupt", ["--ckpt_path", "{in}/garbage.ckpt"], "unreadable"),
    ("ckpt-not-ours", ["--ckpt_path", "{in}/plain.ckpt"], "not a nas-lightning"),
    ("ckpt-other-space", ["--ckpt_path", "{in}/other_space.ckpt"], "nb101"),
    ("ckpt-other-encoding", ["--ckpt_path", "{in}/other_encoding.ckpt"], "model.encoding='onehot'"),
    ("ckpt-other-model", ["--ckpt_path", "{in}/search.ckpt", "--model.hidden", "32"], "model.hidden=16"),
    ("ckpt-other-target", ["--ckpt_path", "{in}/other_target.ckpt"], "ImageNet16-120"),
]
# errors of LightningCLI's parser: one line too, naming the option
PARSER_CASES = [
    ("unknown-key", ["--model.bogus", "1"]),
    ("unknown-section", ["--nothing.here", "1"]),
    ("bad-type", ["--data.support", "ten"]),
    ("config-missing", ["--config", "nowhere.yaml"]),
]
SEARCH_CASES = [
    ("unknown-spec", ["compare", "--task", "imagenet"], "unknown task spec"),
    ("unknown-dataset", ["compare", "--task", "nb201/svhn/val_acc"], "unknown NB201 dataset"),
    ("unknown-metric", ["compare", "--task", "nb201/cifar10/accuracy"], "unknown nb201 metric"),
    ("unknown-strategy", ["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "rea,annealing"], "unknown strategy"),
    ("unknown-option", ["compare", "--task", "nb201/cifar10/val_acc", "--budjet", "5"], "--budjet"),
    ("no-task", ["compare", "--budget", "5"], "task"),
    ("malformed-arch", ["compare", "--task", "csv:{in}/malformed.csv"], "unknown op 'bogus'"),
    ("csv-missing", ["compare", "--task", "csv:{in}/nowhere.csv"], "does not exist"),
    ("csv-unreadable-gz", ["compare", "--task", "csv:{in}/garbage.csv.gz"], "unreadable"),
    ("csv-empty", ["compare", "--task", "csv:{in}/empty.csv"], "is empty"),
    ("csv-no-arch", ["compare", "--task", "csv:{in}/no_arch.csv"], "no 'arch' column"),
    ("csv-nan", ["compare", "--task", "csv:{in}/nan.csv"], "not finite"),
    ("csv-text", ["compare", "--task", "csv:{in}/text.csv"], "not a number"),
    ("csv-duplicate", ["compare", "--task", "csv:{in}/dup.csv"], "more than once"),
    ("csv-foreign-space", ["compare", "--task", "csv:{in}/foreign.csv"], "nodes"),
    ("budget-zero", ["compare", "--task", "nb201/cifar10/val_acc", "--budget", "0"], "--budget"),
    ("budget-negative", ["compare", "--task", "nb201/cifar10/val_acc", "--budget", "-1"], "--budget"),
    ("budget-too-large", ["compare", "--task", "csv:{in}/good.csv", "--budget", "31", "--strategy", "random"], "exceeds"),
    ("seeds-zero", ["compare", "--task", "nb201/cifar10/val_acc", "--seeds", "0"], "--seeds"),
    ("transfer-no-source", ["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "transfer"], "--source"),
    ("meta-no-ckpt", ["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "meta"], "--ckpt"),
    ("meta-batch-zero", ["compare", "--task", "csv:{in}/good.csv", "--strategy", "meta", "--budget", "3", "--seeds", "1",
                         "--ckpt", "{in}/search.ckpt", "--meta.batch", "0"], "meta batch"),
    ("k-too-large", ["rank", "--task", "csv:{in}/good.csv", "--support", "30", "--ckpt", "{in}/search.ckpt"],
     "--support"),
    ("support-archs-malformed", ["rank", "--task", "csv:{in}/good.csv", "--ckpt", "{in}/search.ckpt",
                                 "--support-archs", "{in}/support_malformed.txt"], "unknown op 'what'"),
    ("support-archs-not-in-task", ["rank", "--task", "csv:{in}/good.csv", "--ckpt", "{in}/search.ckpt",
                                   "--support-archs", "{in}/support_foreign.txt"], "is not in task"),
    ("support-archs-missing", ["rank", "--task", "csv:{in}/good.csv", "--ckpt", "{in}/search.ckpt",
                               "--support-archs", "{in}/nowhere.txt"], "unreadable"),
    ("ckpt-missing", ["rank", "--task", "csv:{in}/good.csv", "--ckpt", "{in}/nowhere.ckpt"], "does not exist"),
    ("ckpt-corrupt", ["compare", "--task", "csv:{in}/good.csv", "--strategy", "meta", "--budget", "3", "--ckpt", "{in}/garbage.ckpt"],
     "unreadable"),
    ("ckpt-not-ours", ["rank", "--task", "csv:{in}/good.csv", "--ckpt", "{in}/plain.ckpt"], "not a nas-lightning"),
    ("ckpt-other-space", ["rank", "--task", "csv:{in}/good.csv", "--ckpt", "{in}/other_space.ckpt"], "nb101"),
    ("ckpt-unknown-encoding", ["rank", "--task", "csv:{in}/good.csv", "--ckpt", "{in}/unknown_encoding.ckpt"],
     "unknown encoding"),
    ("device", ["compare", "--task", "nb201/cifar10/val_acc", "--device", "tpu"], "unknown device"),
    ("train-unknown-dataset", ["compare", "--task", "train:mnist"], "unknown dataset 'mnist'"),
    ("train-missing-folder", ["compare", "--task", "train:imagefolder={in}/nowhere"], "nowhere"),
    ("train-empty-folder", ["compare", "--task", "train:imagefolder={in}/no_images"], "no_images"),
    ("train-one-class", ["compare", "--task", "train:imagefolder={in}/one_class"], "class"),
    ("train-mixed-sizes", ["compare", "--task", "train:imagefolder={in}/mixed_sizes", "--oracle.recipe.epochs", "5"], "mixed sizes"),
    ("train-cifar-no-root", ["compare", "--task", "train:cifar10={in}/nowhere"], "nowhere"),
    ("recipe-out-of-range", ["compare", "--task", "train:digits", "--oracle.recipe.epochs", "0"], "epochs"),
    ("rank-a-training-task", ["rank", "--task", "train:digits", "--ckpt", "{in}/search.ckpt"], "no complete table"),
    ("support-archs-binary", ["rank", "--task", "csv:{in}/good.csv", "--ckpt", "{in}/search.ckpt",
                              "--support-archs", "{in}/garbage.ckpt"], "unreadable"),
]


# -- running the real scripts --------------------------------------------------------------------
def _run_script(script: str, args: list[str], cwd: str, err_path: str, env: dict[str, str] | None = None) -> None:
    """In a forked process: run ``script`` as ``__main__`` with ``args`` (and ``env`` added to the
    environment), stderr/stdout to ``err_path``."""
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(cwd)
    os.environ.update(env or {})
    sys.argv = [script, *args]
    code = 1
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@pytest.fixture(scope="module")
def forkserver():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "lightning", "nas_lightning.metatrain", "nas_lightning.commands"])
    return ctx


def _fork(ctx, script: str, args: list[str], cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 120) -> tuple[int, str]:
    err = cwd.parent / f"{cwd.name}.stderr"
    p = ctx.Process(target=_run_script, args=(script, args, str(cwd), str(err), env))
    p.start()
    p.join(timeout=timeout)
    if p.exitcode is None:
        p.kill()
        pytest.fail(f"{script} {args} did not finish")
    return p.exitcode, err.read_text()


def _fill(args: list[str], inputs: Path) -> list[str]:
    return [a.replace("{in}", str(inputs)) for a in args]


def _check(code: int, err: str, cwd: Path, needle: str | None) -> None:
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    if needle is not None:
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, err[-3000:]
        assert needle in errors[0], errors[0]
    assert list(cwd.iterdir()) == [], f"left behind: {sorted(p.name for p in cwd.rglob('*'))}"


@pytest.mark.parametrize("args,needle", [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input(args: list[str], needle: str, inputs: Path, forkserver, tmp_path: Path) -> None:
    cwd = tmp_path / "run"
    cwd.mkdir()
    code, err = _fork(forkserver, TRAIN, TINY + _fill(args, inputs), cwd)
    _check(code, err, cwd, needle)


@pytest.mark.parametrize("args", [c[1] for c in PARSER_CASES], ids=[c[0] for c in PARSER_CASES])
def test_train_parser_errors(args: list[str], forkserver, tmp_path: Path) -> None:
    cwd = tmp_path / "run"
    cwd.mkdir()
    code, err = _fork(forkserver, TRAIN, TINY + args, cwd)
    _check(code, err, cwd, "(see python train.py --help)")
    assert args[0] in err or args[1] in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err


@pytest.mark.parametrize("args,needle", [c[1:] for c in SEARCH_CASES], ids=[c[0] for c in SEARCH_CASES])
def test_search_bad_input(args: list[str], needle: str, inputs: Path, forkserver, tmp_path: Path) -> None:
    cwd = tmp_path / "run"
    cwd.mkdir()
    code, err = _fork(forkserver, SEARCH, _fill(args, inputs) + ["--out", "out"], cwd)
    _check(code, err, cwd, needle)
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err  # search.py prints nothing else


def test_search_out_is_a_file(inputs: Path, forkserver, tmp_path: Path) -> None:
    cwd = tmp_path / "run"
    cwd.mkdir()
    code, err = _fork(forkserver, SEARCH, ["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "random", "--budget", "3",
                                           "--seeds", "1", "--out", str(inputs / "good.csv")], cwd)
    _check(code, err, cwd, "is a file")


@pytest.mark.parametrize("script,args,needle", [
    (TRAIN, TINY + ["--data.train_tasks", "[nb201/cifar10/top1]"], "unknown nb201 metric"),
    (SEARCH, ["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "annealing", "--out", "out"], "unknown strategy"),
], ids=["train", "search"])
def test_plain_subprocess_agrees(script: str, args: list[str], needle: str, tmp_path: Path) -> None:
    """The same contract with no forkserver in between: a plain ``python script ...``."""
    cwd = tmp_path / "run"
    cwd.mkdir()
    proc = subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    _check(proc.returncode, proc.stderr, cwd, needle)


def test_sound_inputs_pass_the_same_checks(inputs: Path, forkserver, tmp_path: Path) -> None:
    """The good files the cases break really are good: a short search on them succeeds."""
    cwd = tmp_path / "run"
    cwd.mkdir()
    code, err = _fork(forkserver, SEARCH, ["compare", "--task", f"csv:{inputs}/ok.csv.gz", "--strategy", "random,meta",
                                           "--budget", "3", "--seeds", "1", "--ckpt", f"{inputs}/search.ckpt",
                                           "--out", "out"], cwd)
    assert code == 0, err[-3000:]
    assert (cwd / "out" / "results.json").is_file()

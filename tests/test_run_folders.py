"""One name places a ``train.py`` run: runs of different names keep their own checkpoints and each
resumes its own; reusing a name continues the run or is refused, never overwrites it."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import lightning as L
import pytest
import torch

from nas_lightning.errors import UserError
from nas_lightning.metatrain import build_cli, fit
from tests.conftest import tiny_run, torch_threads

pytestmark = pytest.mark.slow  # trains

ARGS = tiny_run({"trainer.max_epochs": 1})


class FirstWeights(L.Callback):
    """The weights the training starts from (after a checkpoint was restored)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _train(args: list[str]) -> FirstWeights:
    cli = build_cli(ARGS + args)
    first = FirstWeights()
    cli.trainer.callbacks.append(first)
    with torch_threads(1):
        fit(cli)
    return first


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs ``a`` (seed 1) and ``b`` (seed 2), one epoch each, in one folder."""
    root = tmp_path_factory.mktemp("two_runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        _train(["--run", "a", "--seed_everything", "1"])
        _train(["--run", "b", "--seed_everything", "2"])
    return root


def test_two_names_keep_two_runs_and_each_resumes_its_own(two_runs: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture,
                                                           capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(two_runs)
    caplog.set_level(logging.INFO)
    a, b = (two_runs / "runs" / n / "checkpoints" / "last.ckpt" for n in "ab")
    assert a.is_file() and b.is_file()
    assert (two_runs / "runs" / "a" / "version_0").is_dir() and (two_runs / "runs" / "b" / "version_0").is_dir()
    assert not (two_runs / "runs" / "default").exists()
    before = {"a": _ckpt(a), "b": _ckpt(b)}
    assert before["a"]["global_step"] == before["b"]["global_step"] == 3
    assert any(not torch.equal(before["a"]["state_dict"][k], before["b"]["state_dict"][k]) for k in before["a"]["state_dict"])

    b_digest = _digest(b)
    for name, other, seed in (("a", b, "1"), ("b", a, "2")):
        other_digest = _digest(other)
        first = _train(["--run", name, "--seed_everything", seed, "--ckpt_path", "last", "--trainer.max_epochs", "2"])
        for k, v in before[name]["state_dict"].items():  # it started from its own checkpoint
            assert torch.equal(first.state[k], v), k
        after = _ckpt(two_runs / "runs" / name / "checkpoints" / "last.ckpt")
        assert after["global_step"] == 6 and after["epoch"] == before[name]["epoch"] + 1
        assert _digest(other) == other_digest  # the other run untouched
        assert (two_runs / "runs" / name / "version_1").is_dir()  # the continuation logs beside the first
    assert _digest(b) != b_digest
    # the run folder, at start and at end
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("run 'b'")]
    assert said[0] == "run 'b': logs in runs/b/version_1, checkpoints in runs/b/checkpoints"
    assert said[-1].startswith(said[0]) and said[-1].endswith("continue it with --run b --ckpt_path last")
    wrote = [ln.split()[1] for ln in capsys.readouterr().out.splitlines() if ln.startswith("wrote ")]
    assert wrote[-3:] == ["runs/b/checkpoints/last.ckpt", "runs/b/checkpoints/best.ckpt", "runs/b/version_1"]


def test_reusing_a_name_without_resuming_is_refused(two_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(two_runs)
    a = two_runs / "runs" / "a" / "checkpoints" / "last.ckpt"
    digest, versions = _digest(a), sorted((two_runs / "runs" / "a").iterdir())
    with pytest.raises(UserError, match="run 'a' already has checkpoints.*--ckpt_path last.*--run NEW_NAME"):
        fit(build_cli(ARGS + ["--run", "a"]))
    b = two_runs / "runs" / "b" / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match="not a checkpoint of run 'a'"):  # another run's checkpoint would overwrite a's
        fit(build_cli(ARGS + ["--run", "a", "--ckpt_path", str(b)]))
    assert _digest(a) == digest and sorted((two_runs / "runs" / "a").iterdir()) == versions


def test_last_of_a_run_without_checkpoints_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's ``ckpt_path="last"`` would start afresh when there is no last.ckpt: here it is an error."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no runs/c/checkpoints/last\.ckpt yet.*run 'c'"):
        fit(build_cli(ARGS + ["--run", "c", "--ckpt_path", "last"]))
    assert list(tmp_path.iterdir()) == []


def test_run_name_follows_the_config_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``--run`` the config's logger name places the run; ``--checkpoint.dirpath`` still wins."""
    monkeypatch.chdir(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    cli = build_cli(["--config", str(repo / "configs" / "target_cifar10.yaml"), *ARGS])
    assert cli.config.checkpoint.dirpath == str(Path("runs") / "target_cifar10" / "checkpoints")
    assert cli.run_name == "target_cifar10"
    cli = build_cli(ARGS + ["--run", "x", "--checkpoint.dirpath", "elsewhere"])
    assert cli.config.checkpoint.dirpath == "elsewhere" and cli.trainer.logger.name == "x"
    cli = build_cli(ARGS + ["--trainer.logger", "false", "--checkpoint.dirpath", str(Path("runs") / "fold_3" / "checkpoints")])
    assert cli.run_name == "fold_3"  # no logger: the checkpoint folder names the run

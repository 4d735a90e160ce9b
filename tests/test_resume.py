"""Determinism and resuming: same seed, same run; 4 epochs straight equal 2 + a resumed 2; an
interrupted run (SIGTERM or Ctrl-C mid-epoch) leaves a checkpoint that resumes to the same
result; a non-finite score or non-finite weights never become ``best.ckpt``."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from nas_lightning.spaces import NB201
from nas_lightning.data.episodes import EpisodeSource, sample_episodes
from nas_lightning.models.module import MetaPredictor
from nas_lightning.metatrain import FiniteModelCheckpoint, build_cli, fit
from tests.conftest import tiny_run, torch_threads

pytestmark = pytest.mark.slow  # starts processes or trains

REPO = Path(__file__).resolve().parents[1]
TARGET = "nb201/ImageNet16-120/val_acc"
CKPT = Path("runs/default/checkpoints")
# feedback on: the target's answers enter training, so the oracle and the task set must resume too
ARGS = tiny_run({"model.lr": 0.01, "search.per_round": 3, "search.feedback": True})


class Recorder(L.Callback):
    """Validation metrics per epoch (sanity checks excluded) and the target's search history."""

    def __init__(self) -> None:
        self.val: list[dict[str, float]] = []
        self.history: list[list[int]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.history.append(trainer.datamodule.oracles[TARGET].history()[0].tolist())


def _run(root: Path, args: list[str]) -> tuple[Recorder, dict]:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        cli = build_cli(ARGS + args)
        rec = Recorder()
        cli.trainer.callbacks.append(rec)
        with torch_threads(1):  # as the interrupted subprocess (OMP_NUM_THREADS=1): the same reduction order
            fit(cli)
    finally:
        os.chdir(cwd)
    return rec, torch.load(root / CKPT / "last.ckpt", map_location="cpu", weights_only=False)


def _same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=lambda m, k=k: f"{k}: {m}")


def _same_metrics(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    assert len(a) == len(b) and all(x.keys() == y.keys() and "val/spearman_after" in x for x, y in zip(a, b))
    for x, y in zip(a, b):
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-7), k


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """Four epochs straight; and two epochs, then ``--ckpt_path last --trainer.max_epochs 4``."""
    straight, split = tmp_path_factory.mktemp("straight"), tmp_path_factory.mktemp("split")
    return {
        "straight": _run(straight, ["--trainer.max_epochs", "4"]),
        "first": _run(split, ["--trainer.max_epochs", "2"]),
        "resumed": _run(split, ["--trainer.max_epochs", "4", "--ckpt_path", "last"]),
    }


def test_same_seed_same_run(runs) -> None:
    (straight, _), (first, ckpt) = runs["straight"], runs["first"]
    _same_metrics(first.val, straight.val[:2])
    assert first.history == straight.history[:2]
    assert len(first.history[-1]) == 6


def test_resume_equals_straight(runs) -> None:
    (straight, s_ckpt), (first, _), (resumed, r_ckpt) = runs["straight"], runs["first"], runs["resumed"]
    assert s_ckpt["global_step"] == r_ckpt["global_step"] == 12
    _same_metrics(resumed.val, straight.val[2:])
    assert resumed.history == straight.history[2:]
    assert straight.history[-1][:6] == first.history[-1]  # the history grew from where it stopped
    assert s_ckpt["NASTaskDataModule"]["fed_back"] == r_ckpt["NASTaskDataModule"]["fed_back"] != {TARGET: []}
    assert torch.equal(s_ckpt["NASTaskDataModule"]["generator"], r_ckpt["NASTaskDataModule"]["generator"])
    assert torch.equal(s_ckpt["callbacks"]["SearchCallback"]["generator"], r_ckpt["callbacks"]["SearchCallback"]["generator"])
    _same_weights(s_ckpt["state_dict"], r_ckpt["state_dict"])


def test_user_error_inside_fit_stays_a_user_error(runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A UserError raised inside ``trainer.fit`` (here: restoring a foreign target's oracle, past the
    pre-flight checks) reaches the caller unwrapped, so train.py prints it as one line."""
    from nas_lightning.errors import UserError

    ckpt = copy.deepcopy(runs["first"][1])
    ckpt["NASTaskDataModule"]["oracles"]["nb201/cifar100/val_acc"] = ckpt["NASTaskDataModule"]["oracles"][TARGET]
    torch.save(ckpt, tmp_path / "foreign.ckpt")
    monkeypatch.chdir(tmp_path)
    cli = build_cli(ARGS + ["--trainer.logger", "false"])
    with pytest.raises(UserError, match="does not have"):
        cli.trainer.fit(cli.model, cli.datamodule, ckpt_path=str(tmp_path / "foreign.ckpt"))


def test_validation_does_not_draw_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = build_cli(ARGS + ["--trainer.logger", "false"])
    cli.datamodule.setup("fit")
    before = cli.datamodule.generator.get_state().clone()
    search = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "SearchCallback")
    search_before = search.generator.get_state().clone()
    cli.trainer.validate(cli.model, cli.datamodule)
    assert torch.equal(cli.datamodule.generator.get_state(), before)
    assert torch.equal(search.generator.get_state(), search_before)


# -- interrupted runs --------------------------------------------------------------------------
class PauseAtStep(L.Callback):
    """Test hook for the subprocess: at global step 4 write ``paused`` and wait, so that the signal
    lands mid-epoch at a known step."""

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == 4 and not Path("paused").exists():
            Path("paused").write_text("4")
            time.sleep(4.0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_interrupted_run_resumes(signum: int, tmp_path: Path, runs) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *ARGS, "--trainer.max_epochs", "4",
         "--trainer.callbacks+=tests.test_resume.PauseAtStep"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 1800  # only stops a hung run
        while not (tmp_path / "paused").exists():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the run never reached step 4"
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and "resume with --ckpt_path last" in err
    ckpt = torch.load(tmp_path / CKPT / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1  # mid-epoch: 1 of epoch 1's 3 steps done

    rec, done = _run(tmp_path, ["--trainer.max_epochs", "4", "--ckpt_path", "last"])
    straight, s_ckpt = runs["straight"]
    assert done["global_step"] == 12
    _same_metrics(rec.val, straight.val[1:])
    assert rec.history == straight.history[1:]
    _same_weights(s_ckpt["state_dict"], done["state_dict"])


# -- non-finite scores never become best -----------------------------------------------------
def _loader(n: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    archs = torch.randperm(NB201.size, generator=g)[:60]
    pool = EpisodeSource("synthetic", archs, torch.randn(60, generator=g), True)
    return DataLoader([sample_episodes([pool], 4, 5, 10, g) for _ in range(n)], batch_size=None)


class _NaNScore(MetaPredictor):
    """Finite weights, NaN validation score."""

    def on_validation_epoch_end(self) -> None:
        for metric in self.val_metrics.values():
            metric.reset()
        self.log("val/spearman_after", float("nan"))


class _PoisonAtValidation(L.Callback):
    """Non-finite weights from validation on (after finite training steps)."""

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with torch.no_grad():
            pl_module.net.head.bias.fill_(float("nan"))


@pytest.mark.parametrize("cls", [FiniteModelCheckpoint, ModelCheckpoint], ids=["ours", "lightning"])
@pytest.mark.parametrize("case", ["nan-score", "nan-weights-finite-score", "nan-weights-nan-score"])
def test_nonfinite_never_best(case: str, cls: type, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = (_NaNScore if case == "nan-score" else MetaPredictor)(hidden=16, context=8)
    monitor, mode = ("val/mse_after", "min") if case == "nan-weights-nan-score" else ("val/spearman_after", "max")
    cb = cls(dirpath=tmp_path, filename="best", monitor=monitor, mode=mode, save_last=True, save_on_train_epoch_end=True)
    extra = [] if case == "nan-score" else [_PoisonAtValidation()]
    trainer = L.Trainer(max_epochs=1, logger=False, callbacks=[cb, *extra], enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", inference_mode=False, num_sanity_val_steps=0)
    trainer.fit(module, _loader(2, 0), _loader(1, 1))
    assert trainer.global_step == 2 and (tmp_path / "last.ckpt").is_file()
    score = float(trainer.callback_metrics[monitor])
    assert (score != score) == (case != "nan-weights-finite-score")  # NaN exactly where the case says
    # Lightning's own keeps the first score it sees, NaN or NaN weights alike: the control
    assert (tmp_path / "best.ckpt").exists() == (cls is ModelCheckpoint)

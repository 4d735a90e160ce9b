"""Distributed training: ``python train.py --trainer.strategy ddp --trainer.devices 2`` on CPU (gloo).

One real two-process run (a subprocess, as a user would start it) against a single-process run
of the same settings: every rank must end with the same weights, search history, task set and
generators, and those weights must be the single process's (the meta-batch is split across
ranks, so this holds only if the gradients are reduced correctly, second-order terms included;
the meta-batch of 3 does not split evenly, so it also checks the per-episode weighting).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.testing import assert_close

from nas_lightning.metatrain import build_cli, fit
from tests.conftest import tiny_run, torch_threads

pytestmark = pytest.mark.slow  # starts processes or trains

REPO = Path(__file__).resolve().parents[1]
TARGET = "nb201/ImageNet16-120/val_acc"
ARGS = tiny_run({"data.meta_batch": 3, "data.val_episodes": 3, "data.steps_per_epoch": 2, "model.lr": 0.001,
                 "trainer.max_epochs": 2, "trainer.accelerator": "cpu", "search.per_round": 5, "search.feedback": True})


class RankProbe(L.Callback):
    """Writes the first meta-gradient and what each rank ends training with to ``probe_rank{r}.pt``
    in the working directory."""

    def __init__(self) -> None:
        self.first_grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if trainer.global_step == 0:  # after the reduction, before clipping's effect on Adam
            self.first_grads = {k: p.grad.detach().clone() for k, p in pl_module.named_parameters() if p.grad is not None}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        search = next(cb for cb in trainer.callbacks if type(cb).__name__ == "SearchCallback")
        torch.save({
            "world": trainer.world_size,
            "params": {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()},
            "history": {k: o.history()[0].tolist() for k, o in dm.oracles.items()},
            "fed_back": dict(dm.fed_back),
            "pools": [p.name for p in dm.train_pools()],
            "dm_generator": dm.state_dict()["generator"],
            "search_generator": search.generator.get_state(),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "search/"))},
            "global_step": trainer.global_step,
            "first_grads": self.first_grads,
        }, Path.cwd() / f"probe_rank{trainer.global_rank}.pt")


def test_ddp_matches_single_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(  # the timeout only stops a hung run; speed is the benchmarks' business
        [sys.executable, str(REPO / "train.py"), *ARGS, "--trainer.strategy", "ddp", "--trainer.devices", "2",
         "--trainer.callbacks+=tests.test_ddp.RankProbe"],
        cwd=ddp_dir, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "unused parameters" not in proc.stderr and "find_unused_parameters" not in proc.stderr

    monkeypatch.chdir(single_dir)
    cli = build_cli(ARGS)
    cli.trainer.callbacks.append(RankProbe())
    with torch_threads(1):  # as each DDP process (OMP_NUM_THREADS=1): the same reduction order
        fit(cli)

    r0, r1 = (torch.load(ddp_dir / f"probe_rank{r}.pt", weights_only=False) for r in (0, 1))
    single = torch.load(single_dir / "probe_rank0.pt", weights_only=False)
    assert r0["world"] == r1["world"] == 2 and single["world"] == 1
    # every rank ends with the same everything
    for key in ("history", "fed_back", "pools", "global_step", "metrics"):
        assert r0[key] == r1[key], key
    for key in ("dm_generator", "search_generator"):
        assert torch.equal(r0[key], r1[key]), key
    for k, v in r0["params"].items():
        assert torch.equal(v, r1["params"][k]), k
    # ... and it is what one process gets on the whole meta-batch
    assert r0["global_step"] == single["global_step"] == 4
    assert len(r0["history"][TARGET]) == 10
    assert TARGET in r0["pools"]  # the target set fed back after epoch 1 trained epoch 2 on every rank
    assert r0["history"] == single["history"] and r0["pools"] == single["pools"]
    assert torch.equal(r0["dm_generator"], single["dm_generator"])
    assert torch.equal(r0["search_generator"], single["search_generator"])
    # the first meta-gradient (second order, uneven split) is the whole meta-batch's; rank 0 alone
    # would see half of it. Weights after 4 Adam steps (lr 1e-3): an entry whose gradient is ~0
    # may flip sign by rounding (up to 2 lr apart per step); a missing reduction moves most by ~lr.
    assert r0["first_grads"].keys() == single["first_grads"].keys() and len(single["first_grads"]) > 10
    for k, g in single["first_grads"].items():
        assert torch.equal(r0["first_grads"][k], r1["first_grads"][k]), k
        assert_close(r0["first_grads"][k], g, rtol=1e-4, atol=1e-8, msg=lambda m, k=k: f"grad {k}: {m}")
    diffs = torch.cat([(r0["params"][k] - v).abs().flatten() for k, v in single["params"].items()])
    assert float(diffs.max()) < 4 * 2e-3 and float((diffs > 1e-6).float().mean()) < 0.01, (
        f"max {float(diffs.max()):.2e}, {int((diffs > 1e-6).sum())} of {len(diffs)} entries differ")
    assert r0["metrics"].keys() == single["metrics"].keys() and "val/spearman_after" in single["metrics"]
    for k, v in single["metrics"].items():
        assert abs(r0["metrics"][k] - v) <= 1e-2 * max(1.0, abs(v)), k  # the weights agree to ~1e-3
    # only rank 0 writes: one checkpoint directory, one log version
    assert (ddp_dir / "runs/default/checkpoints/last.ckpt").is_file()
    assert len(list((ddp_dir / "runs/default").glob("version_*"))) == 1

"""``search.py predict`` output that explains itself: predicted values in a latency table's own
unit (milliseconds for a ``latency_ms`` column), the score where no unit applies, the file named."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning
import pytest
import torch

from nas_lightning.commands import main as search_main
from nas_lightning.models.module import MetaPredictor
from nas_lightning.spaces import NB201
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.tasks.task import Task


@pytest.fixture(scope="module")
def module() -> MetaPredictor:
    torch.manual_seed(0)
    return MetaPredictor(hidden=16, context=8).eval()


def _table(n: int, metric: str) -> Task:
    full = load_embedded("cifar10", metric)
    archs = full.archs[torch.randperm(full.size, generator=torch.Generator().manual_seed(1))[:n]].sort().values
    return Task(name=f"csv:mine.csv#{metric}", direction="max" if metric == "val_acc" else "min",
                archs=archs, table=full.lookup(archs).double(), space=NB201)


def _ckpt(path: Path, module: MetaPredictor) -> None:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "loops": {}, "epoch": 0,
                "pytorch-lightning_version": lightning.__version__, "global_step": 0,
                "NASTaskDataModule": {"oracles": {}, "fed_back": {}, "seen_tasks": []}}, path)


def test_predict_on_a_latency_table_writes_predicted_milliseconds(module: MetaPredictor, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    task = _table(12, "latency")
    mine = tmp_path / "my_device.csv"
    mine.write_text("arch,latency_ms\n" + "".join(f"{NB201.to_string(int(a))},{1000 * float(v):.4f}\n"
                                                   for a, v in zip(task.archs, task.table)))
    _ckpt(tmp_path / "p.ckpt", module)
    out = tmp_path / "ranked.csv"
    assert search_main(["predict", "--task", f"csv:{mine}", "--ckpt", str(tmp_path / "p.ckpt"), "--out", str(out),
                        "--device", "cpu"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rank", "arch", "score", "predicted_latency_ms", "measured_latency_ms"]
    predicted = [float(r["predicted_latency_ms"]) for r in rows]
    assert len(rows) == NB201.size and all(p > 0 for p in predicted)
    assert predicted == sorted(predicted)  # best first: the fastest predicted first
    measured = [float(r["measured_latency_ms"]) for r in rows if r["measured_latency_ms"]]
    assert min(predicted) <= min(measured) * 1.5 and max(predicted) >= max(measured) / 1.5  # in ms, not a score
    assert f"wrote {out}" in capsys.readouterr().out


def test_predict_on_an_accuracy_table_keeps_the_score(module: MetaPredictor, tmp_path: Path) -> None:
    task = _table(12, "val_acc")
    mine = tmp_path / "acc.csv"
    mine.write_text("arch,val_acc\n" + "".join(f"{NB201.to_string(int(a))},{float(v):.4f}\n"
                                                for a, v in zip(task.archs, task.table)))
    _ckpt(tmp_path / "p.ckpt", module)
    out = tmp_path / "ranked.csv"
    search_main(["predict", "--task", f"csv:{mine}", "--ckpt", str(tmp_path / "p.ckpt"), "--out", str(out), "--device", "cpu"])
    assert out.read_text().splitlines()[0] == "rank,arch,score,measured_val_acc"

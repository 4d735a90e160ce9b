"""A third search space as a plug-in: this module is the whole of it, plus one registration line.

A toy space of 27 architectures (three decisions of three ops) with three synthetic tables is
registered, a tiny predictor is meta-trained on one of them (another selects models) through ``train.py``'s code, and
``search.py compare`` and ``rank`` run on the third. Nothing in the library names the space.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from nas_lightning.commands import main
from nas_lightning.errors import UserError
from nas_lightning.metatrain import build_cli, fit
from nas_lightning.spaces import SearchSpace, get_space
from nas_lightning.tasks.families import FAMILIES, TableFamily, register
from nas_lightning.tasks.load import load_task
from nas_lightning.tasks.task import Task
from tests.conftest import tiny_run

OPS = ("conv", "pool", "skip")


class ToySpace(SearchSpace):
    """Three decisions of three ops each: ``conv-pool-skip`` is one of 27 architectures."""

    name, size, decisions = "toy", 27, (3, 3, 3)
    encodings, default_encoding, example = {"onehot": 9}, "onehot", "conv-pool-skip"

    def to_string(self, index: int) -> str:
        return "-".join(OPS[c] for c in self.choices(int(index)).tolist())

    def from_string(self, text: str) -> int:
        parts = text.strip().split("-")
        if len(parts) != 3 or any(p not in OPS for p in parts):
            raise UserError(f"{text!r} is not a toy architecture; write e.g. {self.example}")
        return int(self.from_choices(torch.tensor([OPS.index(p) for p in parts])))

    def choices(self, indices: torch.Tensor | int) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return torch.stack([idx // 9, idx // 3 % 3, idx % 3], dim=-1)

    def from_choices(self, choices: torch.Tensor) -> torch.Tensor:
        c = torch.as_tensor(choices, dtype=torch.long)
        ok = ((c >= 0) & (c < 3)).all(-1)
        return torch.where(ok, c[..., 0] * 9 + c[..., 1] * 3 + c[..., 2], torch.full_like(c[..., 0], -1))

    def neighbours(self, index: int) -> torch.Tensor:
        c = self.choices(int(index))
        out = [c.clone().index_fill_(0, torch.tensor([d]), v) for d in range(3) for v in range(3) if v != int(c[d])]
        return self.from_choices(torch.stack(out))

    def encode(self, indices: torch.Tensor, encoding: str) -> torch.Tensor:
        if encoding != "onehot":
            raise ValueError(f"toy space has only the onehot encoding, not {encoding!r}")
        return torch.nn.functional.one_hot(self.choices(indices), 3).flatten(-2).float()


TOY = ToySpace()
DATASETS = ("a", "b", "c")


def load_toy(dataset: str, metric: str) -> Task:
    """``toy/<a|b|c>/acc``: a shared op effect plus a dataset's own noise (seeded)."""
    if dataset not in DATASETS or metric != "acc":
        raise UserError(f"no toy table {dataset}/{metric}; choose toy/a/acc, toy/b/acc or toy/c/acc")
    effect = torch.tensor([3.0, 1.0, 0.0])  # conv > pool > skip, everywhere
    archs = TOY.all_indices()
    base = effect[TOY.choices(archs)].sum(-1)
    noise = torch.randn(TOY.size, generator=torch.Generator().manual_seed(DATASETS.index(dataset)))
    return Task(name=f"toy/{dataset}/acc", direction="max", archs=archs, table=50 + 5 * base + noise, space=TOY)


register(TableFamily("toy", TOY, load_toy, specs=lambda: [f"toy/{d}/acc" for d in DATASETS]))  # the one registration line


def test_the_space_and_its_tables_are_found_by_name() -> None:
    assert get_space("toy") is TOY and FAMILIES["toy"].space is TOY
    task = load_task("toy/c/acc")
    assert task.space == TOY and task.size == 27 and TOY.from_string(TOY.to_string(13)) == 13


def test_train_then_compare_and_rank_on_the_toy_space(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = tiny_run({"data.train_tasks": "[toy/a/acc]", "data.val_tasks": "[toy/b/acc]", "data.target_tasks": "[]",
                     "data.support": 5, "data.query": 10, "data.val_query": 10, "model.space": "toy",
                     "model.encoding": "onehot", "trainer.max_epochs": 2, "trainer.logger": False,
                     "checkpoint.dirpath": str(tmp_path / "ck")})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cli = build_cli(args)
        fit(cli)
    finally:
        os.chdir(cwd)
    ckpt = tmp_path / "ck" / "last.ckpt"
    assert ckpt.is_file() and cli.model.space == TOY
    assert main(["compare", "--task", "toy/c/acc", "--strategy", "meta,rea,random", "--budget", "8", "--seeds", "2",
                 "--ckpt", str(ckpt), "--out", str(tmp_path / "cmp")]) == 0
    res = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert res["task"] == "toy/c/acc" and set(res["strategies"]) == {"meta", "rea", "random"}
    assert all(len(run["archs"]) == 8 for r in res["strategies"].values() for run in r["per_seed"])
    assert main(["rank", "--task", "toy/c/acc", "--ckpt", str(ckpt), "--support", "5", "--seeds", "2",
                 "--out", str(tmp_path / "rank")]) == 0
    ranked = json.loads((tmp_path / "rank" / "results.json").read_text())
    assert {"meta", "scratch"} <= set(ranked) and -1 <= ranked["meta"]["spearman_mean"] <= 1

"""Leakage: the held-out target's values are read only through its Oracle (counted queries) and,
for scoring afterwards, through the evaluation-only view; never by training, never by a search.

The target task is swapped for a :class:`GuardedTask` whose value tensors (``table``,
``seed_table``: behind ``values()``, ``lookup``, ``lookup_seed``, ``best``) refuse every read
unless the call comes through ``Oracle.query`` or an ``EvaluationView`` method. Inside a meta-step
(``training_step``) no read is allowed at all; inside a search (``MetaSearch.run``) only the
oracle is. Every refused read is recorded as well as raised, so a broad ``except`` somewhere
cannot hide it. A full tiny ``train.py`` run (with the search feeding the target back into
training, and a noisy oracle) and a ``meta`` comparison run must pass.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from nas_lightning.oracles import EvaluationView, Oracle, TableOracle
from nas_lightning.tasks.task import Task
from nas_lightning.data import datamodule as dm_module
from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.scoring import PredictorScorer
from nas_lightning.search.meta import MetaSearch
from nas_lightning.search.runner import run_comparison
from nas_lightning.metatrain import build_cli, fit
from tests.conftest import GuardedTask, tiny_run

pytestmark = pytest.mark.slow  # starts processes or trains

TARGET = "nb201/ImageNet16-120/val_acc"
ARGS = tiny_run({"data.target_tasks": f"[{TARGET}]", "data.oracle.noisy": True, "trainer.max_epochs": 3,
                 "search.per_round": 5, "search.feedback": True})


class Leak(AssertionError):
    """A read of the target's values outside the oracle and the evaluation-only path."""


class Guard:
    """Which door a read comes through, and the reads refused."""

    def __init__(self) -> None:
        self.door: list[str] = []  # innermost last: "oracle", "evaluation", "search", "training"
        self.reads = {"oracle": 0, "evaluation": 0}
        self.leaks: list[str] = []

    def check(self, what: str) -> None:
        allowed = {"oracle", "evaluation"}
        if "training" in self.door:
            allowed = set()  # a meta-step never touches the target's values
        elif "search" in self.door:
            allowed = {"oracle"}  # a search sees only what it paid for
        door = self.door[-1] if self.door else None
        if door not in allowed:
            self.leaks.append(f"{what} read through {door or 'no door'} (doors: {self.door})")
            raise Leak(self.leaks[-1])
        self.reads[door] += 1

    def through(self, door: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.door.append(door)
            try:
                return fn(*args, **kwargs)
            finally:
                self.door.pop()

        return wrapped


GUARD: Guard | None = None



@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Guard:
    global GUARD
    GUARD = g = Guard()
    monkeypatch.setattr(Oracle, "query", g.through("oracle", Oracle.query))
    for name in ("values", "lookup", "optimum"):
        monkeypatch.setattr(EvaluationView, name, g.through("evaluation", getattr(EvaluationView, name)))
    monkeypatch.setattr(MetaSearch, "run", g.through("search", MetaSearch.run))
    monkeypatch.setattr(MetaPredictor, "training_step", g.through("training", MetaPredictor.training_step))
    real = dm_module.load_tasks

    def parse(spec: str, csv_dir: str | None = None) -> list[Task]:
        tasks = real(spec, csv_dir)
        return [GuardedTask.wrap(t, lambda what: GUARD.check(what)) for t in tasks] if spec == TARGET else tasks

    monkeypatch.setattr(dm_module, "load_tasks", parse)
    yield g
    GUARD = None


def test_guard_refuses_direct_reads(guard: Guard) -> None:
    """The guard itself: every direct read fails; the two doors work; a search may not evaluate."""
    task = dm_module.load_tasks(TARGET)[0]
    assert isinstance(task, GuardedTask)
    for read in (task.values, lambda: task.lookup(torch.tensor([0])), task.best,
                 lambda: task.lookup_seed(0, torch.Generator()), lambda: task.seed_table):
        with pytest.raises(Leak):
            read()
    oracle = TableOracle(task, budget=3)
    assert oracle.query([5, 6]).shape == (2,)
    view = oracle.evaluation_only()
    assert view.values().shape == (task.size,)
    with pytest.raises(Leak):
        guard.through("search", view.optimum)()
    with pytest.raises(Leak):
        guard.through("training", oracle.query)([7])  # a new architecture: a table read
    assert len(guard.leaks) == 7
    guard.leaks.clear()


def target_queries(dm) -> int:
    return dm.oracles[TARGET].num_queries


def test_training_and_meta_search_never_leak(guard: Guard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = build_cli(ARGS)
    fit(cli)
    dm = cli.datamodule
    target = dm.oracles[TARGET]._task
    assert isinstance(target, GuardedTask), "the guard was not installed on the target"
    assert target.name in [p.name for p in dm.train_pools()]  # fed back, read through the oracle
    assert target.name not in [t.name for t in dm.train + dm.val]
    assert guard.leaks == []
    assert guard.reads["oracle"] > 0 and guard.reads["evaluation"] > 0  # both doors were used
    assert len(dm.fed_back[TARGET]) == 15 == target_queries(dm)

    reads_before = dict(guard.reads)
    module = cli.model.eval()
    scorer = PredictorScorer(module, target.direction == "max", members=2)
    results = run_comparison(target, {"meta": lambda: MetaSearch(scorer, batch=2)}, budget=6, seeds=[0, 1])
    assert guard.leaks == []
    assert results["strategies"]["meta"]["regret_mean"] is not None
    assert guard.reads["oracle"] > reads_before["oracle"] and guard.reads["evaluation"] > reads_before["evaluation"]

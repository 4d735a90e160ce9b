"""The fixed-lag asynchronous search: one worker is exactly the sequential search; more workers are
deterministic, never propose a running architecture, and keep budget and charge-once."""

from __future__ import annotations

import zlib

import pytest
import torch

from nas_lightning.search import STRATEGIES, MetaSearch, make_strategy
from nas_lightning.search.driver import run_parallel
from nas_lightning.oracles import TableOracle
from tests.test_strategies import TableScorer, cifar10, cifar100, partial  # noqa: F401 (fixtures)

NAMES = [n for n in STRATEGIES if n != "pretrain"]


class Recording(TableOracle):
    """A table oracle with submit / collect: checks that nothing running is submitted again and
    that the budget counts what was submitted."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.running: list[int] = []
        self.peak = 0

    def submit(self, arch: int) -> None:
        assert arch not in self.running and not bool(self.seen(torch.tensor([arch]))[0])
        assert self.budget is None or self.num_queries + len(self.running) < self.budget
        self.running.append(arch)
        self.peak = max(self.peak, len(self.running))

    def collect(self, arch: int) -> float:
        assert self.running[0] == arch  # the oldest first: proposal order
        self.running.pop(0)
        return float(self.query(arch)[0])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("task_name", ["cifar10", "partial"])
def test_one_worker_is_the_sequential_search(name: str, task_name: str, request, cifar100) -> None:
    task = request.getfixturevalue(task_name)
    for seed in (0, 1):
        for rounds in ([30], [12, 18]):  # also continuing from a history
            a, b = TableOracle(task, 30, seed=seed), TableOracle(task, 30, seed=seed)
            ga, gb = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            sa, sb = make_strategy(name, source=cifar100, scorer=TableScorer(cifar100), batch=2 if seed else 1), \
                make_strategy(name, source=cifar100, scorer=TableScorer(cifar100), batch=2 if seed else 1)
            for n in rounds:
                sa.run(a, n, ga)
                run_parallel(sb, b, n, gb, workers=1)
            assert a.history()[0].tolist() == b.history()[0].tolist()
            assert torch.equal(a.history()[1], b.history()[1])
            assert torch.equal(ga.get_state(), gb.get_state())


def test_one_worker_is_the_sequential_meta_on_a_large_space(cifar10, cifar100) -> None:
    """meta's large-space schedule (max_candidates below the space) in ask / tell form."""
    a, b = TableOracle(cifar10, 30, seed=0), TableOracle(cifar10, 30, seed=0)
    ga, gb = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    MetaSearch(TableScorer(cifar100), max_candidates=100).run(a, 30, ga)
    run_parallel(MetaSearch(TableScorer(cifar100), max_candidates=100), b, 30, gb, workers=1)
    assert a.history()[0].tolist() == b.history()[0].tolist()
    assert torch.equal(ga.get_state(), gb.get_state())


@pytest.mark.parametrize("name", NAMES)
def test_more_workers_are_deterministic_and_keep_the_rules(name: str, cifar10, cifar100) -> None:
    runs = []
    for _ in range(2):
        oracle = Recording(cifar10, 25, seed=0)
        run_parallel(make_strategy(name, source=cifar100, scorer=TableScorer(cifar100)), oracle, 40,
                     torch.Generator().manual_seed(3), workers=3)
        idx = oracle.history()[0].tolist()
        assert oracle.num_queries == 25 == len(set(idx)) and not oracle.running
        runs.append((idx, oracle.peak))
    assert runs[0] == runs[1]
    if name != "local":  # local search waits for whole neighbourhoods: it may run fewer at once
        assert runs[0][1] == 3
    sequential = TableOracle(cifar10, 25, seed=0)
    make_strategy(name, source=cifar100, scorer=TableScorer(cifar100)).run(sequential, 25, torch.Generator().manual_seed(3))
    if name in ("random", "transfer", "local"):  # they never act on a pending value: the same queries
        assert sequential.history()[0].tolist() == runs[0][0]


def test_workers_below_one_is_an_error(cifar10) -> None:
    with pytest.raises(ValueError, match="workers"):
        run_parallel(make_strategy("random"), TableOracle(cifar10, 3), 3, torch.Generator(), workers=0)


def test_the_training_oracle_charges_at_submission(tmp_path, monkeypatch) -> None:
    """submit charges (the budget counts what runs), nothing is submitted twice, results enter the
    history when collected, and the store gets each training once (here without Ray: a fake training)."""
    from nas_lightning.oracles import training as oracle_module
    from nas_lightning.candidates.datasets import load_digits_data
    from nas_lightning.candidates.recipe import get_recipe
    from nas_lightning.candidates.store import ResultStore
    from nas_lightning.oracles import BudgetExhausted

    calls = []
    monkeypatch.setattr(oracle_module, "train_candidate", lambda ops, *a, **k: calls.append(ops) or
                        {"status": "ok", "val_acc": float(len(calls)), "test_acc": 1.0, "params": 0.1, "seconds": 0.5})
    with ResultStore(tmp_path / "r.sqlite") as store:
        oracle = oracle_module.TrainingOracle(load_digits_data(), get_recipe("cpu"), store, budget=2)
        oracle.submit(7)
        with pytest.raises(ValueError, match="already submitted"):
            oracle.submit(7)
        oracle.submit(9)
        assert oracle.remaining == 0 and oracle.num_queries == 0
        with pytest.raises(BudgetExhausted):
            oracle.submit(11)
        assert [oracle.collect(7), oracle.collect(9)] == [1.0, 2.0] and oracle.history()[0].tolist() == [7, 9]
        assert len(calls) == len(store) == 2 and oracle.cost == 1.0 and store.rows()[0]["node"] == ""


def test_a_version_1_store_gains_the_node_column(tmp_path) -> None:
    import sqlite3

    from nas_lightning.candidates.store import ResultStore

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, arch TEXT NOT NULL, dataset TEXT NOT NULL, recipe TEXT NOT NULL, "
                     "seed INTEGER NOT NULL, val_acc REAL, test_acc REAL, params REAL, seconds REAL, status TEXT NOT NULL, "
                     "reason TEXT NOT NULL DEFAULT '', finished_at TEXT NOT NULL, UNIQUE (arch, dataset, recipe, seed))")
        conn.execute("INSERT INTO results (arch, dataset, recipe, seed, val_acc, status, finished_at) VALUES ('a', 'd', 'r', 0, 90.0, 'ok', 'then')")
        conn.execute("PRAGMA user_version = 1")
    with ResultStore(path) as store:
        assert store.get("a", "d", "r", 0)["node"] == "" and store.get("a", "d", "r", 0)["val_acc"] == 90.0
        store.put("b", "d", "r", 0, {"status": "ok", "val_acc": 1.0, "node": "n1"})
        assert [r["node"] for r in store.rows()] == ["", "n1"]


class FakePool:
    """Stands in for a RayPool: trainings finish newest first (out of order), and the ``kill_at``-th
    result never arrives (the driver is killed)."""

    def __init__(self, kill_at: int | None = None) -> None:
        self.refs: dict[int, dict] = {}
        self.trained, self.kill_at = 0, kill_at

    def submit(self, ops, data, recipe, log_dir, accelerator) -> int:
        value = 50.0 + (zlib.crc32("|".join(ops).encode()) % 4000) / 100.0
        self.refs[len(self.refs)] = {"status": "ok", "val_acc": value, "test_acc": value, "params": 0.1,
                                     "seconds": 1.0, "node": "fake"}
        return len(self.refs) - 1

    def finished(self, refs: list, timeout=None) -> list:
        return [max(refs)]

    def result(self, ref: int, arch: str) -> dict:
        self.trained += 1
        if self.trained == self.kill_at:
            raise KeyboardInterrupt("the driver was killed")
        return self.refs[ref]

    def cancel(self, refs: list) -> None:
        pass


def test_a_killed_driver_resumes_from_the_store(tmp_path) -> None:
    """Results are stored as they finish (also out of order); the same command again proposes the
    same cells, trains only what was not stored, and ends with the uninterrupted run's history."""
    from nas_lightning.candidates.datasets import load_digits_data
    from nas_lightning.oracles.training import TrainingOracle
    from nas_lightning.candidates.recipe import get_recipe
    from nas_lightning.candidates.store import ResultStore
    from nas_lightning.search.strategies import RegularizedEvolution

    data, recipe = load_digits_data(), get_recipe("cpu")

    def run(path, pool):
        with ResultStore(path) as store:
            oracle = TrainingOracle(data, recipe, store, budget=8, pool=pool)
            try:
                run_parallel(RegularizedEvolution(population=3, sample_size=2), oracle, 8, torch.Generator().manual_seed(0), workers=3)
            finally:
                rows = store.rows()
        return oracle.history()[0].tolist(), rows

    straight, _ = run(tmp_path / "a.sqlite", FakePool())
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b.sqlite", FakePool(kill_at=5))
    with ResultStore(tmp_path / "b.sqlite") as store:
        assert len(store) == 4  # every result that reached the driver before the kill
    again = FakePool()
    resumed, rows = run(tmp_path / "b.sqlite", again)
    assert resumed == straight and again.trained == 8 - 4
    assert len(rows) == len({r["arch"] for r in rows}) == 8 and {r["node"] for r in rows} == {"fake"}

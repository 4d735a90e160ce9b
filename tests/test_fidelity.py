"""Multi-fidelity: a training stopped and continued equals one straight run; the curve store;
replayed and live curve oracles; ASHA (ours and Ray Tune's) on a compute budget; kill -9."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas_lightning.candidates.curves import CurveTable, read_table, spearman, table_rows, write_table
from nas_lightning.candidates.recipe import Recipe
from nas_lightning.candidates.store import ResultStore
from nas_lightning.candidates.train import load_snapshot, train_candidate
from nas_lightning.errors import UserError
from nas_lightning.oracles import BudgetExhausted
from nas_lightning.oracles.fidelity import FullTrainings
from nas_lightning.oracles.replay import ReplayOracle
from nas_lightning.oracles.training_curves import TrainingCurves
from nas_lightning.search import make_strategy
from nas_lightning.search.asha import RandomEntry, _labels, passes, rungs, run_asha
from nas_lightning.search.driver import run_parallel
from nas_lightning.spaces import NB201

from tests.conftest import kill_after_rows
from tests.test_recipe import CELL, digits, one_thread  # noqa: F401  (the same fixtures: digits, one CPU thread)

REPO = Path(__file__).resolve().parents[1]
SMALL = Recipe(C=2, N=1, epochs=20, batch_size=16, lr=0.05, max_train_images=60)


def test_five_then_twenty_equals_twenty_straight(digits) -> None:
    straight = train_candidate(CELL, digits, SMALL, accelerator="cpu")
    five = train_candidate(CELL, digits, SMALL, accelerator="cpu", epochs=5)
    assert five["epochs"] == 5 and five["test_acc"] is None and five["snapshot"] is not None
    assert [p[0] for p in five["curve"]] == [p[0] for p in straight["curve"][:5]]
    resumed = train_candidate(CELL, digits, SMALL, accelerator="cpu", resume=five["snapshot"])
    assert [p[0] for p in resumed["curve"]] == [p[0] for p in straight["curve"]]
    assert len(straight["curve"]) == 20 and resumed["snapshot"] is None
    assert resumed["val_acc"] == straight["val_acc"] and resumed["test_acc"] == straight["test_acc"]
    assert straight["curve"][-1][0] == straight["val_acc"]
    seconds = [p[1] for p in resumed["curve"]]
    assert seconds == sorted(seconds) and resumed["seconds"] >= seconds[-1]  # cumulative over both parts


def test_snapshot_is_plain_data_and_checked(digits) -> None:
    snap = train_candidate(CELL, digits, SMALL.replace(epochs=3), accelerator="cpu", epochs=1)["snapshot"]
    state = load_snapshot(snap)  # weights_only: tensors and numbers
    assert state["epochs"] == 1 and state["arch"] == NB201.to_string(NB201.from_string(state["arch"]))
    with pytest.raises(UserError, match="cannot continue"):
        train_candidate(CELL[::-1], digits, SMALL.replace(epochs=3), accelerator="cpu", resume=snap)
    with pytest.raises(UserError, match="cannot continue"):
        train_candidate(CELL, digits, SMALL.replace(epochs=3, seed=1), accelerator="cpu", resume=snap)
    with pytest.raises(UserError, match="out of range"):
        train_candidate(CELL, digits, SMALL.replace(epochs=3), accelerator="cpu", epochs=4)


def test_store_keeps_stopped_trainings_until_finished(tmp_path: Path, digits) -> None:
    recipe = SMALL.replace(epochs=3)
    with ResultStore(tmp_path / "s.sqlite") as store:
        key = ("a", "d", recipe.key, 0)
        one = train_candidate(CELL, digits, recipe, accelerator="cpu", epochs=1)
        store.save_progress(*key, one)
        two = train_candidate(CELL, digits, recipe, accelerator="cpu", epochs=2, resume=one["snapshot"])
        store.save_progress(*key, two)
        store.save_progress(*key, one)  # an older stop never replaces a later one
        assert store.progress(*key)["epochs"] == 2 and store.progress(*key)["curve"] == two["curve"]
        done = train_candidate(CELL, digits, recipe, accelerator="cpu", resume=store.progress(*key)["snapshot"])
        store.put(*key, done)
        assert store.progress(*key) is None and store.get(*key)["curve"] == done["curve"]


def test_an_older_store_gains_curves(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, arch TEXT NOT NULL, dataset TEXT NOT NULL, recipe TEXT NOT NULL, "
                     "seed INTEGER NOT NULL, val_acc REAL, test_acc REAL, params REAL, seconds REAL, status TEXT NOT NULL, "
                     "reason TEXT NOT NULL DEFAULT '', finished_at TEXT NOT NULL, node TEXT NOT NULL DEFAULT '', "
                     "UNIQUE (arch, dataset, recipe, seed))")
        conn.execute("INSERT INTO results (arch, dataset, recipe, seed, val_acc, status, finished_at) VALUES ('a', 'd', 'r', 0, 50, 'ok', 'now')")
        conn.execute("PRAGMA user_version = 2")
    with ResultStore(path) as store:
        assert store.get("a", "d", "r", 0)["curve"] == [] and store.progress("a", "d", "r", 0) is None
    with ResultStore(path) as store:  # reopened: the migrated file passes the checks
        assert len(store) == 1


def _table(n: int = 40, epochs: int = 8, seed: int = 0) -> CurveTable:
    """Synthetic curves: each cell rises towards its own final accuracy (noisy early epochs)."""
    g = torch.Generator().manual_seed(seed)
    archs = torch.randperm(NB201.size, generator=g)[:n]
    final = 50 + 45 * torch.rand(n, generator=g, dtype=torch.float64)
    t = torch.arange(1, epochs + 1, dtype=torch.float64) / epochs
    val = final[:, None] * t.sqrt()[None] + 5 * torch.rand(n, epochs, generator=g, dtype=torch.float64) * (1 - t)[None]
    seconds = torch.cumsum(0.5 + torch.rand(n, epochs, generator=g, dtype=torch.float64), 1)
    return CurveTable(archs, val, seconds, final - 1, seconds[:, -1] + 0.1)


def test_curve_table_round_trip_and_bad_files(tmp_path: Path) -> None:
    t = _table(5, 3)
    rows = [{"arch": NB201.to_string(int(a)), "status": "ok", "val_acc": float(t.val[r, -1]), "test_acc": float(t.test[r]),
             "params": 0.1, "seconds": float(t.total_seconds[r]), "curve": [[float(v), float(s)] for v, s in zip(t.val[r], t.seconds[r])]}
            for r, a in enumerate(t.archs.tolist())]
    write_table(table_rows(rows + [{"status": "failed", "curve": []}]), tmp_path / "c.csv")
    back = read_table(tmp_path / "c.csv")
    assert torch.equal(back.archs, t.archs) and torch.allclose(back.val, t.val) and torch.allclose(back.seconds, t.seconds)
    (tmp_path / "bad.csv").write_text("arch,val_acc\n")
    with pytest.raises(UserError, match="tabulate"):
        read_table(tmp_path / "bad.csv")
    with pytest.raises(UserError, match="unreadable"):
        read_table(tmp_path / "missing.csv")
    assert spearman(torch.tensor([1.0, 2, 3, 3]), torch.tensor([1.0, 2, 3, 4])) == pytest.approx(0.9486832980505138)


def test_replay_charges_epochs_and_continues() -> None:
    t = _table()
    oracle = ReplayOracle(t, budget=20)
    a = int(t.archs[0])
    oracle.start(a, 2)
    first = oracle.wait()
    assert (first.epochs, first.value, first.epochs_done) == (2, float(t.val[0, 1]), 2)
    assert first.seconds_done == pytest.approx(float(t.seconds[0, 1]))
    oracle.start(a, 8)  # continued: charged 6 more, seconds from epoch 2 to 8
    second = oracle.wait()
    assert second.epochs_done == 8 and second.seconds_done == pytest.approx(float(t.seconds[0, 7]))
    with pytest.raises(ValueError, match="at epoch 8"):
        oracle.start(a, 8)
    oracle.start(int(t.archs[1]), 8)
    oracle.wait()
    with pytest.raises(BudgetExhausted):
        oracle.start(int(t.archs[2]), 8)
    assert oracle.epochs_spent == 16 and oracle.remaining == 4 and oracle.running == 0


def test_full_trainings_spend_the_epoch_budget() -> None:
    t = _table()
    oracle = ReplayOracle(t, budget=30)  # three full trainings of 8 epochs fit, not four
    run_parallel(make_strategy("random"), FullTrainings(oracle), 10, torch.Generator().manual_seed(0), 1)
    assert [a.epochs for a in oracle.answers] == [8, 8, 8] and oracle.epochs_spent == 24


def test_asha_rule_is_tunes() -> None:
    from nas_lightning.candidates.ray_access import loopback_only

    with loopback_only():
        from ray.tune.schedulers.async_hyperband import _Bracket
    assert rungs(20, 2, 3) == (2, 6, 18, 20) and rungs(8, 1, 2) == (1, 2, 4, 8)
    bracket = _Bracket(2, 20, 3, 0)
    assert [m for m, _ in bracket._rungs][::-1] == list(rungs(20, 2, 3)[:-1])
    recorded: list[float] = []
    g = torch.Generator().manual_seed(1)

    class T:
        def __init__(self, i: int) -> None:
            self.trial_id = str(i)

    for i, v in enumerate((torch.rand(30, generator=g) * 100).tolist()):
        assert passes(v, recorded, 3) == (bracket.on_result(T(i), 2, v) == "CONTINUE")
        recorded.append(v)


def test_asha_spends_its_budget_deterministically() -> None:
    t = _table(60, 8)
    runs = []
    for _ in range(2):
        oracle = ReplayOracle(t, budget=60)
        run_asha(oracle, RandomEntry(oracle, torch.Generator().manual_seed(3)), rungs(8, 1, 2), 2)
        runs.append([(a.index, a.epochs) for a in oracle.answers])
        assert oracle.epochs_spent <= 60 and oracle.remaining < 1  # nothing fits any more
        assert any(a.epochs == 8 for a in oracle.answers) and any(a.epochs == 1 for a in oracle.answers)
        for a in oracle.answers:  # every continuation starts where the candidate stopped
            assert a.epochs in rungs(8, 1, 2)
    assert runs[0] == runs[1]


def test_labels_rank_candidates_across_rungs() -> None:
    results = [{1: 10.0, 2: 20.0, 3: 30.0, 4: 40.0}, {4: 60.0, 3: 50.0}, {}]
    labels = _labels(results)
    assert labels[4] > labels[3] > labels[2] > labels[1]  # promoted ones above those that stopped
    assert labels[4] == pytest.approx(1 - 0.25 * 2 / 4)


def test_tune_replay_equals_the_tuner() -> None:
    pytest.importorskip("ray.tune")
    from nas_lightning.search.tune_asha import replay_trial, replay_tune_asha, run_tune_asha

    t = _table(30, 4)
    direct = replay_tune_asha(t, 24, 1, 2, seed=5)
    tuned = run_tune_asha(replay_trial(t), t.archs, t.epochs, 24, 1, 2, seed=5)
    assert direct == tuned and direct[-1].epochs_done == 24


def test_live_curves_reuse_the_store(tmp_path: Path, digits) -> None:
    recipe = SMALL.replace(epochs=4)
    with ResultStore(tmp_path / "s.sqlite") as store:
        oracle = TrainingCurves(digits, recipe, store, budget=8, accelerator="cpu")
        a = NB201.from_string(NB201.to_string(1234))
        oracle.start(a, 2)
        first = oracle.wait()
        assert store.progress(*oracle._key(a))["epochs"] == 2 and oracle.trained_epochs == 2
        oracle.start(a, 4)
        assert oracle.wait().epochs == 4 and store.get(*oracle._key(a))["status"] == "ok"
        assert oracle.trained_epochs == 4 and store.progress(*oracle._key(a)) is None
        again = TrainingCurves(digits, recipe, store, budget=8, accelerator="cpu")
        again.start(a, 2)
        assert again.wait().value == first.value and again.trained_epochs == 0  # answered from the stored curve
        assert again.final_test(a) == store.get(*oracle._key(a))["test_acc"]


@pytest.mark.slow
def test_asha_compare_survives_kill_9(tmp_path: Path) -> None:
    """Kill a multi-fidelity compare after some trainings; the same command again gives the result of
    an uninterrupted run, training only what was not stored (nothing finished, no stopped epoch again)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    recipe = ["--oracle.recipe.epochs", "4", "--oracle.recipe.C", "2", "--oracle.recipe.N", "1",
              "--oracle.recipe.max_train_images", "60", "--oracle.recipe.batch_size", "16"]

    def command(out: Path) -> list[str]:
        return [sys.executable, str(REPO / "search.py"), "compare", "--task", "train:digits", "--strategy", "asha,random",
                "--budget_epochs", "40", "--seeds", "1", "--asha.grace", "1", "--asha.eta", "2", "--out", str(out), *recipe]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "trainings.sqlite"
    kill_after_rows(proc, db, 2, poll=0.1, limit=900)
    with sqlite3.connect(db) as conn:
        stored = (4 * conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                  + (conn.execute("SELECT SUM(epochs) FROM progress").fetchone()[0] or 0))
    for out in (killed, tmp_path / "straight"):
        done = subprocess.run(command(out), env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    resumed, straight = (json.loads((d / "results.json").read_text()) for d in (killed, tmp_path / "straight"))

    def decisions(r: dict) -> dict:
        return {n: [(run["answers"], run["best_arch"], run["best_val_acc"], run["epochs"]) for run in s["runs"]]
                for n, s in r["strategies"].items()}

    assert decisions(resumed) == decisions(straight)
    trained = lambda r: sum(run["epochs_trained_now"] for s in r["strategies"].values() for run in s["runs"])  # noqa: E731
    assert trained(resumed) == trained(straight) - stored > 0


TINY_RECIPE = ["--oracle.recipe.epochs", "3", "--oracle.recipe.C", "2", "--oracle.recipe.N", "1",
               "--oracle.recipe.max_train_images", "40", "--oracle.recipe.batch_size", "20"]


def test_tabulate_writes_a_curve_table_and_reuses_the_store(tmp_path: Path, capsys) -> None:
    from nas_lightning.commands import main

    out = tmp_path / "tab"
    assert main(["tabulate", "--task", "train:digits", "--cells", "3", "--out", str(out), *TINY_RECIPE]) == 0
    table = read_table(out / "cells.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len(table.archs) == summary["cells"] == summary["trained_now"] == 3 and table.epochs == 3
    assert set(summary["rung_spearman"]) == {"1", "2"} and summary["val_acc"]["max"] == float(table.final.max())
    assert main(["tabulate", "--task", "train:digits", "--cells", "4", "--out", str(out), *TINY_RECIPE]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["cells"] == 4 and again["trained_now"] == 1  # the first three cells are the same, from the store
    assert "csv:" in capsys.readouterr().out
    from nas_lightning.tasks.load import load_task

    task = load_task(f"csv:{out / 'cells.csv'}#val_acc")  # the table is a task of its own (train.py, search.py)
    assert len(task.archs) == 4 and torch.allclose(task.lookup(task.archs).double().sort().values,
                                                   read_table(out / "cells.csv").final.sort().values.double(), atol=1e-4)


@pytest.mark.parametrize("argv, words", [
    (["tabulate", "--task", "nb201/cifar10/val_acc"], "train:<dataset>"),
    (["tabulate", "--task", "train:digits", "--cells", "1"], "at least 2"),
    (["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "random", "--budget_epochs", "40"], "train:"),
    (["compare", "--task", "train:digits", "--strategy", "asha"], "--budget_epochs"),
    (["compare", "--task", "train:digits", "--strategy", "random", "--budget_epochs", "5"], "below one full training"),
    (["compare", "--task", "train:digits", "--strategy", "asha-meta", "--budget_epochs", "40"], "--ckpt"),
    (["compare", "--task", "train:digits", "--strategy", "asha", "--budget_epochs", "40", "--asha.eta", "1"], "asha.eta"),
])
def test_bad_multi_fidelity_input_is_one_line(tmp_path: Path, argv: list[str], words: str) -> None:
    from nas_lightning.commands import main

    with pytest.raises(UserError, match=None) as err:
        main([*argv, "--out", str(tmp_path / "o")])
    assert words in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()  # nothing written

"""The training-backed oracle: the oracle contract on real trainings, a shared SQLite store, and a
search that survives kill -9 without retraining what finished."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas_lightning.errors import UserError
from nas_lightning.oracles import training as oracle_module
from nas_lightning.candidates.datasets import load_digits_data
from nas_lightning.oracles.training import FAILED_VALUE, TrainingOracle, TrainingSpec
from nas_lightning.candidates.recipe import get_recipe
from nas_lightning.candidates.store import ResultStore
from nas_lightning.oracles import BudgetExhausted
from nas_lightning.metatrain import build_cli, fit
from tests.conftest import kill_after_rows, tiny_run

REPO = Path(__file__).resolve().parents[1]
TINY = {"epochs": 1, "max_train_images": 40, "C": 4, "batch_size": 20}  # a second or two a candidate
TINY_FLAGS = [a for k, v in TINY.items() for a in (f"--oracle.recipe.{k}", str(v))]


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def test_spec_forms() -> None:
    assert str(TrainingSpec.parse("train:digits")) == "train:digits"
    assert TrainingSpec.parse("train:imagefolder=/data/mine") == TrainingSpec("folder", "/data/mine")
    assert TrainingSpec.parse("train:CIFAR10=~/c").dataset == "cifar10"
    with pytest.raises(UserError, match="unknown dataset 'mnist'"):
        TrainingSpec.parse("train:mnist")


def test_oracle_contract_and_a_shared_store(digits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = get_recipe("cpu", **TINY)
    calls = []
    real = oracle_module.train_candidate
    monkeypatch.setattr(oracle_module, "train_candidate", lambda ops, *a, **k: calls.append(ops) or real(ops, *a, **k))
    with ResultStore(tmp_path / "r.sqlite") as store:
        a = TrainingOracle(digits, recipe, store, budget=3)
        first = a.query(torch.tensor([5, 100, 5]))
        assert a.num_queries == 2 and len(calls) == 2 and first[0] == first[2]  # charged once
        a.query([100])
        assert len(calls) == 2
        a.query([200])
        with pytest.raises(BudgetExhausted):
            a.query([300])
        b = TrainingOracle(digits, recipe, store, budget=5)  # another strategy or seed: the trainings are shared
        assert torch.equal(b.query([200, 5, 100]), a.query([200, 5, 100])) and len(calls) == 3 and b.trained == 0
        assert len(store) == 3 and a.evaluation_only() is None and a.cost > 0
        c = TrainingOracle(digits, recipe.replace(seed=1), store, budget=1)  # another training seed: a new training
        c.query([5])
        assert len(calls) == 4 and len(store) == 4 and c.fingerprint != a.fingerprint


def test_a_failed_training_is_charged_and_the_search_goes_on(digits, tmp_path: Path, monkeypatch) -> None:
    def fails(ops, data, recipe, *a, **k):
        return {"status": "failed", "reason": "non-finite loss at step 3", "seconds": 0.1, "params": 0.1}

    monkeypatch.setattr(oracle_module, "train_candidate", fails)
    with ResultStore(tmp_path / "r.sqlite") as store:
        oracle = TrainingOracle(digits, get_recipe("cpu", **TINY), store, budget=2)
        assert oracle.query([7]).tolist() == [FAILED_VALUE] and oracle.num_queries == 1
        (row,) = store.rows()
        assert row["status"] == "failed" and "non-finite" in row["reason"]


@pytest.mark.slow
def test_compare_on_digits_survives_kill_9(tmp_path: Path) -> None:
    """Kill a running compare after some trainings; the same command again finishes with the results
    of an uninterrupted run, and no finished candidate was trained twice."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # both runs reduce alike

    def command(out: Path) -> list[str]:
        return [sys.executable, str(REPO / "search.py"), "compare", "--task", "train:digits", "--strategy", "random,rea",
                "--budget", "6", "--seeds", "1", "--out", str(out), *TINY_FLAGS]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "trainings.sqlite"
    kill_after_rows(proc, db, 4)
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    for out in (killed, tmp_path / "straight"):
        done = subprocess.run(command(out), env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr[-2000:]
    resumed, straight = (json.loads((d / "results.json").read_text()) for d in (killed, tmp_path / "straight"))
    for r in (resumed, straight):
        for s in r["strategies"].values():
            s.pop("seconds_mean"), s.pop("cost_mean")
            for seed in s["per_seed"]:
                seed.pop("seconds"), seed.pop("cost"), seed.pop("cost_so_far")
    assert resumed["strategies"] == straight["strategies"]
    assert resumed["distinct_candidates"] == straight["distinct_candidates"] == straight["trainings_run"]
    assert resumed["trainings_run"] == resumed["distinct_candidates"] - before  # nothing finished was retrained
    with sqlite3.connect(db) as conn:
        keys = conn.execute("SELECT arch, dataset, recipe, seed FROM results").fetchall()
    assert len(keys) == len(set(keys)) == resumed["distinct_candidates"]
    assert (killed / "trainings.csv").read_text().count("\n") == resumed["distinct_candidates"] + 1


@pytest.mark.slow
def test_train_py_runs_the_seeds_loop_on_digits_and_resumes_without_retraining(tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = oracle_module.train_candidate
    monkeypatch.setattr(oracle_module, "train_candidate", lambda ops, *a, **k: calls.append(ops) or real(ops, *a, **k))
    monkeypatch.chdir(tmp_path)
    args = tiny_run({"data.target_tasks": "[train:digits]", "search.feedback": True, "search.per_round": 2,
                     "trainer.logger": False, **{f"data.oracle.recipe.{k}": v for k, v in TINY.items()}})
    fit(build_cli(args + ["--trainer.max_epochs", "1"]))
    assert len(calls) == 2
    cli = build_cli(args + ["--trainer.max_epochs", "2", "--ckpt_path", "last"])
    fit(cli)
    oracle = cli.datamodule.oracles["train:digits"]
    assert len(calls) == 4 and oracle.num_queries == 4  # the resumed round trained only its 2 new cells
    assert cli.datamodule.fed_back["train:digits"] == oracle.history()[0].tolist()
    with ResultStore(tmp_path / "runs" / "default" / "trainings.sqlite") as store:
        assert len(store) == 4

"""The CPU thread count of a training is part of its store key: trainings on one and on two threads
never answer for each other, and stores written before the thread count joined the key still match."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from nas_lightning.errors import UserError
from nas_lightning.oracles import training as oracle_module
from nas_lightning.candidates.datasets import load_digits_data
from nas_lightning.oracles import OracleSettings, TrainingOracle
from nas_lightning.candidates.ray_pool import RaySettings
from nas_lightning.candidates.recipe import PRESETS, Recipe, get_recipe
from nas_lightning.candidates.train import train_candidate
from nas_lightning.candidates.store import ResultStore

TINY = {"epochs": 1, "max_train_images": 40, "C": 2, "N": 1, "batch_size": 20}


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def test_default_keys_are_those_existing_stores_hold() -> None:
    # the keys of recipes as stores wrote them before the thread count and determinism joined the key
    assert Recipe().key == "3e1b39ea87523fcb"
    assert PRESETS["cpu"].key == "f64b3dc24c1cfada" and PRESETS["200ep"].key == "de6f8239c5976866"
    assert Recipe(threads=2).key != Recipe().key != Recipe(threads=4).key != Recipe(threads=2).key
    with pytest.raises(UserError, match="threads"):
        Recipe(threads=0)


def test_the_key_hashes_the_description() -> None:
    for recipe in (Recipe(), Recipe(threads=3), Recipe(deterministic=False, lr=0.2)):
        blob = json.dumps(recipe.description, sort_keys=True).encode()
        assert hashlib.sha256(blob).hexdigest()[:16] == recipe.key
    assert Recipe(threads=3).description["threads"] == 3 and "threads" not in Recipe().description


class _Threads(L.Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.seen.append(torch.get_num_threads())


def test_a_training_runs_on_the_recipes_threads_and_restores_the_callers(digits) -> None:
    before = torch.get_num_threads()
    spy = _Threads()
    result = train_candidate(("nor_conv_3x3",) * 6, digits, get_recipe("cpu", **TINY, threads=2), accelerator="cpu",
                             callbacks=[spy])
    assert result["status"] == "ok" and set(spy.seen) == {2}
    assert result["recipe"] == get_recipe("cpu", **TINY, threads=2).key
    assert torch.get_num_threads() == before


def test_one_and_two_thread_trainings_of_a_cell_are_stored_under_different_keys(digits, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = oracle_module.train_candidate
    monkeypatch.setattr(oracle_module, "train_candidate",
                        lambda ops, data, recipe, *a, **k: calls.append(recipe.threads) or real(ops, data, recipe, *a, **k))
    recipe = get_recipe("cpu", **TINY)
    with ResultStore(tmp_path / "r.sqlite") as store:
        one = TrainingOracle(digits, recipe, store, budget=1)
        two = TrainingOracle(digits, recipe.replace(threads=2), store, budget=1)
        one.query([1234])
        two.query([1234])  # the same cell on two threads: trained again, not read back
        assert calls == [1, 2] and one.fingerprint != two.fingerprint
        rows = store.rows()
        assert len(rows) == 2 and {r["recipe"] for r in rows} == {recipe.key, recipe.replace(threads=2).key}
        assert store.description(recipe.replace(threads=2).key)["description"]["threads"] == 2
        described = store.description(digits.fingerprint)
        assert described["kind"] == "dataset" and described["description"]["task"] == "train:digits"


class _InProcessPool:
    """A stand-in for a Ray pool: trains where it is called, with the settings of ``--trial-cpus 2``."""

    settings = RaySettings(workers=1, trial_cpus=2)

    def __init__(self) -> None:
        self.recipes: list[Recipe] = []
        self.results: list[dict] = []

    def submit(self, ops, data, recipe, log_dir, accelerator) -> int:
        self.recipes.append(recipe)
        self.results.append(train_candidate(ops, data, recipe, log_dir, "cpu"))
        return len(self.results) - 1  # the "reference": an index into the finished results

    def finished(self, refs: list[int]) -> list[int]:
        return refs

    def result(self, ref: int, arch: str) -> dict:
        return self.results[ref]


def test_trainings_on_ray_use_one_thread_per_cpu_asked_and_say_so_in_the_key(digits, tmp_path: Path) -> None:
    recipe = get_recipe("cpu", **TINY)
    pool = _InProcessPool()
    with ResultStore(tmp_path / "r.sqlite") as store:
        oracle = TrainingOracle(digits, recipe, store, budget=1, pool=pool)
        oracle.submit(99)
        oracle.collect(99)
        assert [r.threads for r in pool.recipes] == [2]
        (row,) = store.rows()
        assert row["recipe"] == recipe.replace(threads=2).key != recipe.key
        assert TrainingOracle(digits, recipe, store, budget=1)._stored(99) is None  # not an answer for one thread


def test_recipe_threads_that_disagree_with_trial_cpus_are_refused_before_any_work(tmp_path: Path) -> None:
    from nas_lightning.commands.compare import compare

    with pytest.raises(UserError, match="disagrees with ray.trial_cpus"):
        compare("train:digits", out=str(tmp_path / "out"),
                oracle=OracleSettings(recipe=get_recipe("cpu", threads=3), ray=RaySettings(2, trial_cpus=1)))
    assert not (tmp_path / "out").exists()

"""``search.py compare`` on a ``train:...`` task: candidates trained for real, results in SQLite."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from nas_lightning.files import atomic
from nas_lightning.interrupt import Interrupted
from nas_lightning.oracles import OracleFactory, TrainingOracle
from nas_lightning.oracles.training import TrainingTarget
from nas_lightning.search.runner import StrategyFactories, run_comparison
from nas_lightning.spaces import NB201

log = logging.getLogger(__name__)


def run_training_comparison(target: TrainingTarget, strategies: StrategyFactories, budget: int, seeds: int,
                            factory: OracleFactory, out: str | None) -> dict[str, Any]:
    """Every strategy on the training task, once per seed, sharing one store of finished trainings.

    Writes ``trainings.csv`` (every candidate this comparison trained or reused) into ``out``, and
    adds each strategy's best pick's validation and test accuracy (test: the final pick only).
    With Ray settings (``factory.settings.ray``), that many trainings run at once on a Ray
    instance started (or joined) here and stopped (or left) at the end, the strategies proposing
    asynchronously.
    """
    ray, path = factory.settings.ray, factory.store_path
    oracles: list[TrainingOracle] = []
    store = None
    try:
        factory.start_pool()  # a bad address or too few resources: before any file
        store = factory.store

        def make(seed: int, strategy: str) -> TrainingOracle:
            oracle = factory.oracle(target, seed, progress=f"{strategy} seed {seed}")
            oracles.append(oracle)
            return oracle

        start = time.perf_counter()
        results = run_comparison(make, strategies, budget, seeds, workers=ray.workers)
        wall = time.perf_counter() - start
    except Interrupted as err:  # SIGINT/SIGTERM: what is in the store stays, a rerun reuses it
        for oracle in oracles:
            bar = getattr(oracle, "_bar", None)
            if bar is not None:
                bar.close()  # the one line that follows starts a line of its own
        if store is not None:
            err.note = f"{len(store)} trainings kept in {path}; run the same command to continue"
            store.close()
        raise
    finally:
        factory.close()
    trained = sum(o.trained for o in oracles)
    asked = sorted({i for o in oracles for i in o.history()[0].tolist()})
    rows = [store.get(NB201.to_string(i), target.data.fingerprint, target.recipe.key, target.recipe.seed) for i in asked]
    rows = [r for r in rows if r is not None]  # a training whose worker was lost past its retries is not stored
    results.update({"store": str(path.resolve()), "trainings_run": trained, "distinct_candidates": len(asked),
                    "recipe": dataclasses.asdict(target.recipe) | {"key": target.recipe.key}, "dataset": target.data.describe(),
                    "dataset_fingerprint": target.data.fingerprint, "wall_seconds": wall,
                    "trainings_per_minute": 60.0 * trained / wall if wall > 0 else None,
                    "ray": None if not ray.enabled else dataclasses.asdict(ray) | {"nodes": sorted({r["node"] for r in rows if r["node"]})}})
    ok = [r["val_acc"] for r in rows if r["status"] == "ok"]
    results["val_acc_spread"] = {"min": min(ok), "max": max(ok), "n": len(ok)} if ok else None
    for r in results["strategies"].values():
        if r["best_arch"] is not None:
            row = store.get(r["best_arch"], target.data.fingerprint, target.recipe.key, target.recipe.seed) or {}
            r["best_val_acc"], r["best_test_acc"] = row.get("val_acc"), row.get("test_acc")
    if out:
        with atomic(Path(out) / "trainings.csv") as (tmp,), open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["arch"])
            w.writeheader()
            w.writerows({**r, "curve": json.dumps(r["curve"]) if r.get("curve") else ""} for r in rows)
    log.info("%d distinct candidates, %d trained by this run (the rest from %s)", len(asked), trained, path)
    store.close()
    return results

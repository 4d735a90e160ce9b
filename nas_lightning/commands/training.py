"""``search.py compare`` on a ``train:...`` task: candidates trained for real, results in SQLite."""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_lightning.commands.common import check_runs, source_task
from nas_lightning.evaluation.datasets import ImageData
from nas_lightning.evaluation.parallel import RayPool, RaySettings
from nas_lightning.evaluation.oracle import TrainingOracle, TrainingSpec, experiment_fingerprint
from nas_lightning.evaluation.recipe import Recipe
from nas_lightning.evaluation.store import ResultStore
from nas_lightning.files import atomic
from nas_lightning.interrupt import Interrupted
from nas_lightning.search.runner import StrategyFactories, run_comparison
from nas_lightning.spaces import NB201, SearchSpace
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)


@dataclass
class TrainingTarget:
    """What ``compare`` knows of a training task before any training: its identity and recipe."""

    spec: TrainingSpec
    data: ImageData
    recipe: Recipe
    fingerprint: str
    space: SearchSpace = NB201
    direction: str = "max"

    @property
    def name(self) -> str:
        return str(self.spec)

    @property
    def size(self) -> int:
        return self.space.size


def training_target(task: str, recipe: Recipe, source: str | None, seeds: int, out: str | None,
                    official_path: str | None) -> tuple[TrainingTarget, Task | None]:
    """The training task ``task`` names (its data loaded and checked) and the fixed transfer source."""
    check_runs(seeds, out)
    spec = TrainingSpec.parse(task)
    data = spec.load(recipe.resolution if spec.dataset == "folder" else None)
    fixed = source_task(source, NB201.name, official_path)
    return TrainingTarget(spec, data, recipe, experiment_fingerprint(data, recipe)), fixed


def run_training_comparison(target: TrainingTarget, strategies: StrategyFactories, budget: int, seeds: int,
                            store_path: str | None, out: str | None, ray: RaySettings | None = None) -> dict[str, Any]:
    """Every strategy on the training task, once per seed, sharing one store of finished trainings.

    Writes ``trainings.csv`` (every candidate this comparison trained or reused) into ``out``, and
    adds each strategy's best pick's validation and test accuracy (test: the final pick only).
    With ``ray``, ``ray.workers`` trainings run at once on a Ray instance started (or joined) here
    and stopped (or left) at the end, the strategies in their asynchronous form.
    """
    path = Path(store_path) if store_path else Path(out or "runs") / "trainings.sqlite"
    pool = RayPool(ray) if ray is not None else None  # a bad address or too few resources: before any file
    store: ResultStore | None = None
    oracles: list[TrainingOracle] = []
    try:
        store = ResultStore(path)
        log_dir = Path(out) / "candidates" if out else None

        def make(seed: int) -> TrainingOracle:
            oracle = TrainingOracle(target.data, target.recipe, store, budget, name=target.name, log_dir=log_dir,
                                    progress=f"seed {seed}", pool=pool)
            oracles.append(oracle)
            return oracle

        start = time.perf_counter()
        results = run_comparison(make, strategies, budget, seeds, workers=None if ray is None else ray.workers)
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
        if pool is not None:
            pool.close()
    trained = sum(o.trained for o in oracles)
    asked = sorted({i for o in oracles for i in o.history()[0].tolist()})
    rows = [store.get(NB201.to_string(i), target.data.fingerprint, target.recipe.key, target.recipe.seed) for i in asked]
    rows = [r for r in rows if r is not None]  # a training whose worker was lost past its retries is not stored
    results.update({"store": str(path.resolve()), "trainings_run": trained, "distinct_candidates": len(asked),
                    "recipe": dataclasses.asdict(target.recipe) | {"key": target.recipe.key}, "dataset": target.data.describe(),
                    "dataset_fingerprint": target.data.fingerprint, "wall_seconds": wall,
                    "trainings_per_minute": 60.0 * trained / wall if wall > 0 else None,
                    "ray": None if ray is None else dataclasses.asdict(ray) | {"nodes": sorted({r["node"] for r in rows if r["node"]})}})
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
            w.writerows(rows)
    log.info("%d distinct candidates, %d trained by this run (the rest from %s)", len(asked), trained, path)
    store.close()
    return results

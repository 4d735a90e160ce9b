"""``fidelity-live``: Ray Tune's ASHA and ours with the meta prior, training on digits for real.

The same comparison as ``fidelity``'s replay, live: candidates of the whole NB201 space trained with
the default ``cpu`` recipe on scikit-learn's digits, ``--workers`` at once on one local Ray instance
(loopback only), a budget in epochs. ``tune-asha`` is Ray Tune's ``Tuner`` with ``ASHAScheduler``
and random search; ``asha-meta`` is our ASHA with the meta-learned predictor choosing who enters,
on a fresh result store per run (so nothing is reused across seeds and wall times are comparable).
Reported per method: mean best full-length validation accuracy, compute and wall time, and whether
the two come in the order ``fidelity``'s replay (its result in the same ``--out`` folder) measured.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.fidelity import ETA, GRACE, best_at, trace
from benchmarks.search import checkpoint
from nas_lightning.candidates.datasets import load_digits_data
from nas_lightning.candidates.ray_pool import RayPool, RaySettings
from nas_lightning.candidates.recipe import get_recipe
from nas_lightning.candidates.store import ResultStore
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.scoring import PredictorScorer
from nas_lightning.oracles.training_curves import TrainingCurves
from nas_lightning.search import make_strategy
from nas_lightning.search.asha import MetaEntry, rungs, run_asha
from nas_lightning.search.meta import MetaOptions
from nas_lightning.search.tune_asha import live_trial, run_tune_asha
from nas_lightning.spaces import NB201


def run(tiny: bool = False, device: str = "cpu", ckpt_dir: str | None = None, seeds: int | None = None,
        budget: int | None = None, workers: int = 2, replay: dict[str, Any] | None = None) -> dict[str, Any]:
    """The live comparison (see the module); ``replay``: the replay benchmark's result to check the order against."""
    seeds = seeds or (1 if tiny else 3)
    recipe = get_recipe("cpu", epochs=4) if tiny else get_recipe("cpu")
    budget = budget or (12 if tiny else 300)
    grace = 1 if tiny else GRACE
    data = load_digits_data()
    runs: dict[str, list[dict[str, Any]]] = {"tune-asha": [], "asha-meta": []}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(ckpt_dir) if ckpt_dir else (Path(tmp) if tiny else common.ROOT)
        ckpt, _ = checkpoint("default", root.resolve(), tiny)
        scorer = PredictorScorer(load_predictor(str(ckpt), device, NB201), True, MetaOptions().members)
        pool = RayPool(RaySettings(workers=workers))
        try:
            for seed in range(seeds):
                t0 = time.perf_counter()
                answers = run_tune_asha(live_trial(data, recipe, "cpu"), NB201.all_indices(), recipe.epochs, budget, grace, ETA, seed,
                                        workers, pool=pool)
                runs["tune-asha"].append(_one(answers, recipe.epochs, budget, time.perf_counter() - t0))
                t0 = time.perf_counter()
                with ResultStore(Path(tmp) / f"asha_meta_{seed}.sqlite") as store:
                    oracle = TrainingCurves(data, recipe, store, budget, workers, pool, accelerator="cpu")
                    entry = MetaEntry(make_strategy("meta", scorer=scorer, beta=MetaOptions().beta), oracle,
                                      torch.Generator().manual_seed(seed))
                    run_asha(oracle, entry, rungs(recipe.epochs, grace, ETA), ETA)
                    runs["asha-meta"].append(_one(oracle.answers, recipe.epochs, budget, time.perf_counter() - t0))
        finally:
            pool.close()
    summary = {name: {"best_mean": _mean([r["best"] for r in rs]), "best_per_seed": [r["best"] for r in rs],
                      "wall_seconds_mean": statistics.fmean(r["wall"] for r in rs), "wall_seconds": [r["wall"] for r in rs],
                      "epochs_mean": statistics.fmean(r["epochs"] for r in rs),
                      "training_seconds_mean": statistics.fmean(r["seconds"] for r in rs),
                      "full_trainings_mean": statistics.fmean(r["full"] for r in rs)} for name, rs in runs.items()}
    res = {"machine": common.machine(), "dataset": data.describe(), "recipe": recipe.description | {"key": recipe.key}, "budget": budget,
           "seeds": seeds, "workers": workers, "rungs": list(rungs(recipe.epochs, grace, ETA)), "eta": ETA, "strategies": summary,
           "seconds": time.perf_counter() - start}
    res.update(ordering(res, replay, tiny))
    return res


def ordering(res: dict[str, Any], replay: dict[str, Any] | None, tiny: bool = False) -> dict[str, Any]:
    """Whether asha-meta and tune-asha come in the order the replay (``fidelity``'s result from the
    same output folder) measured at the same budget; without a replay result, the live order only."""
    ours, tune = res["strategies"]["asha-meta"]["best_mean"], res["strategies"]["tune-asha"]["best_mean"]
    live = f"asha-meta {common.f3(ours)} vs tune-asha {common.f3(tune)}"
    at = str(res["budget"])
    marks = (replay or {}).get("strategies", {})
    if not marks or at not in marks.get("asha-meta", {}).get("best_at", {}) or ours is None or tune is None:
        return {"ordering_met": None, "ordering": f"{live}; no replay result at {at} epochs to compare with"}
    r_ours, r_tune = (marks[n]["best_at"][at]["mean"] for n in ("asha-meta", "tune-asha"))
    return {"ordering_met": None if tiny else (ours >= tune) == (r_ours >= r_tune),
            "ordering": f"{live}; replay at {at} epochs: asha-meta {common.f3(r_ours)} vs tune-asha {common.f3(r_tune)}"}


def _one(answers: list[Any], max_epochs: int, budget: int, wall: float) -> dict[str, Any]:
    found = best_at(trace(answers, max_epochs), budget)
    return {"best": None if found is None else found[0], "arch": None if found is None else NB201.to_string(found[1]),
            "epochs": answers[-1].epochs_done if answers else 0, "seconds": answers[-1].seconds_done if answers else 0.0,
            "full": sum(a.epochs == max_epochs for a in answers), "wall": wall}


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md."""
    rows = [[name, common.f3(s["best_mean"]), ", ".join(common.f3(v) for v in s["best_per_seed"]), f"{s['epochs_mean']:.0f}",
             f"{s['full_trainings_mean']:.1f}", f"{s['training_seconds_mean']:.0f}", f"{s['wall_seconds_mean']:.0f}"]
            for name, s in res["strategies"].items()]
    return "\n".join([
        f"{res['dataset']}; recipe `{res['recipe']['key']}` ({res['recipe']['epochs']} epochs); budget {res['budget']} epochs; "
        f"{res['seeds']} seeds; {res['workers']} workers; rungs {', '.join(map(str, res['rungs']))} (eta {res['eta']}).", "",
        common.table(["strategy", "mean best val", "per seed", "epochs", "full trainings", "training s", "wall s"], rows), "",
        f"The same order of asha-meta and tune-asha as the replay at this budget: {common.verdict(res['ordering_met'])} "
        f"({res['ordering']}).",
    ])

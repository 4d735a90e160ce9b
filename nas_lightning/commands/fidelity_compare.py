"""``search.py compare --budget_epochs N`` on a ``train:`` task: strategies side by side on a budget
in epochs of training, not in queries.

Full-training strategies (``random``, ``rea``, ``meta``, ...) train each candidate to the recipe's
full length; ``asha`` and ``asha-meta`` (:mod:`~nas_lightning.search.asha`) stop and continue
candidates; ``tune-asha`` is Ray Tune's own ``ASHAScheduler`` with random search, training the
same network with the same recipe. Every strategy but Tune's shares one result store (curves and
stopped trainings), so a killed comparison run again retrains nothing finished; each is charged
the epochs and measured seconds of what it asked for, whoever trained it first.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch

from nas_lightning.files import atomic
from nas_lightning.oracles import OracleFactory
from nas_lightning.oracles.fidelity import Answer, FullTrainings
from nas_lightning.oracles.training import TrainingTarget
from nas_lightning.oracles.training_curves import TrainingCurves
from nas_lightning.search.asha import AshaOptions, MetaEntry, RandomEntry, rungs, run_asha
from nas_lightning.search.driver import run_parallel
from nas_lightning.search.strategies import Strategy
from nas_lightning.search.tune_asha import live_trial, run_tune_asha
from nas_lightning.spaces import NB201

log = logging.getLogger(__name__)
MULTI_FIDELITY = ("asha", "asha-meta", "tune-asha")


def run_fidelity_comparison(target: TrainingTarget, names: list[str], make: Callable[[str], Strategy], budget: int,
                            seeds: int, factory: OracleFactory, asha: AshaOptions) -> dict[str, Any]:
    """Every strategy once per seed on ``budget`` epochs; per run every answer and the best full-length pick."""
    recipe, ray = target.recipe, factory.settings.ray
    workers = ray.workers or 1
    milestones = rungs(recipe.epochs, asha.grace, asha.eta)
    results: dict[str, Any] = {"task": target.name, "budget_epochs": budget, "seeds": list(range(seeds)), "workers": workers,
                               "rungs": list(milestones), "eta": asha.eta, "recipe": dataclasses.asdict(recipe) | {"key": recipe.key},
                               "dataset": target.data.describe(), "strategies": {}}
    try:
        pool = factory.start_pool()
        for name in names:
            runs = []
            for seed in range(seeds):
                start = time.perf_counter()
                gen = torch.Generator().manual_seed(seed)
                if name == "tune-asha":
                    resources = {"cpu": ray.trial_cpus, "gpu": ray.trial_gpus} if ray.enabled else None
                    answers, trained = run_tune_asha(live_trial(target.data, recipe), NB201.all_indices(), recipe.epochs, budget,
                                                     asha.grace, asha.eta, seed, workers, pool=pool, resources=resources), None
                else:
                    oracle = TrainingCurves(target.data, recipe, factory.store, budget, workers, pool, name=target.name)
                    if name == "asha":
                        run_asha(oracle, RandomEntry(oracle, gen), milestones, asha.eta)
                    elif name == "asha-meta":
                        run_asha(oracle, MetaEntry(make("meta"), oracle, gen), milestones, asha.eta)
                    else:
                        run_parallel(make(name), FullTrainings(oracle), budget // recipe.epochs, gen, workers)
                    answers, trained = oracle.answers, oracle.trained_epochs
                    picks = {a.index: oracle.final_test(a.index) for a in answers if a.epochs == recipe.epochs}
                runs.append(_run(answers, recipe.epochs, time.perf_counter() - start, trained,
                                 picks if name != "tune-asha" else {}))
                log.info("%s seed %d: best %s after %d epochs", name, seed, runs[-1]["best_val_acc"], runs[-1]["epochs"])
            results["strategies"][name] = _summary(runs)
    finally:
        factory.close()
    return results


def _run(answers: list[Answer], max_epochs: int, wall: float, trained: int | None, tests: dict[int, float | None]) -> dict[str, Any]:
    best, points = None, []
    for a in answers:
        if a.epochs == max_epochs and (best is None or a.value > best[0]):
            best = (a.value, a.index)
        points.append([a.epochs_done, round(a.seconds_done, 3), None if best is None else best[0]])
    return {"best_val_acc": None if best is None else best[0], "best_arch": None if best is None else NB201.to_string(best[1]),
            "best_test_acc": None if best is None else tests.get(best[1]), "epochs": answers[-1].epochs_done if answers else 0,
            "seconds": answers[-1].seconds_done if answers else 0.0, "full_trainings": sum(a.epochs == max_epochs for a in answers),
            "jobs": len({(a.index) for a in answers}), "wall_seconds": wall, "epochs_trained_now": trained,
            "curve": points, "answers": [[NB201.to_string(a.index), a.epochs, a.value] for a in answers]}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    vals = [r["best_val_acc"] for r in runs if r["best_val_acc"] is not None]
    return {"best_mean": sum(vals) / len(vals) if vals else None, "epochs_mean": sum(r["epochs"] for r in runs) / len(runs),
            "seconds_mean": sum(r["seconds"] for r in runs) / len(runs), "runs": runs}


def format_fidelity(results: dict[str, Any]) -> str:
    """One line per strategy: mean best, compute and wall time."""
    head = f"{'strategy':<12} {'best_mean':>10} {'epochs':>8} {'train_s':>9} {'wall_s':>8}"
    lines = [f"{results['task']}, budget {results['budget_epochs']} epochs, {len(results['seeds'])} seeds, "
             f"rungs {results['rungs']}", head, "-" * len(head)]
    for name, s in results["strategies"].items():
        best = "-" if s["best_mean"] is None else f"{s['best_mean']:.2f}"
        wall = sum(r["wall_seconds"] for r in s["runs"]) / len(s["runs"])
        lines.append(f"{name:<12} {best:>10} {s['epochs_mean']:>8.0f} {s['seconds_mean']:>9.1f} {wall:>8.1f}")
    return "\n".join(lines)


def write_fidelity(results: dict[str, Any], out: Path) -> None:
    """``results.json`` and ``best_vs_compute.png`` (best full-length accuracy against epochs, mean over
    seeds, and against training seconds, each seed), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with atomic(out / "results.json", out / "best_vs_compute.png") as (tmp_json, tmp_png):
        tmp_json.write_text(json.dumps(results, indent=2) + "\n")
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        grid = list(range(1, results["budget_epochs"] + 1))
        for name, s in results["strategies"].items():
            means = []
            for e in grid:
                vals = [max((p[2] for p in r["curve"] if p[0] <= e and p[2] is not None), default=None) for r in s["runs"]]
                means.append(sum(vals) / len(vals) if all(v is not None for v in vals) else float("nan"))
            line, = ax.plot(grid, means, label=name)
            for k, r in enumerate(s["runs"]):  # each run against the training seconds it spent
                pts = [(p[1], p[2]) for p in r["curve"] if p[2] is not None]
                if pts:
                    bx.step(*zip(*pts), where="post", color=line.get_color(), alpha=0.7, label=name if k == 0 else None)
        ax.set_xlabel("epochs of training spent")
        ax.set_ylabel("best full-length validation accuracy (%)")
        ax.set_title(f"{results['task']}: mean over seeds")
        bx.set_xlabel("seconds of training spent (as measured)")
        bx.set_title("each seed")
        ax.legend()
        fig.tight_layout()
        fig.savefig(tmp_png, format="png", dpi=110)
        plt.close(fig)

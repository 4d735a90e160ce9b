"""``fidelity``: spend training time, not queries: multi-fidelity search against full trainings.

Replay (default): every search answers from a learning-curve table (``search.py tabulate``; the
shipped one is ``data/curves/digits_cpu.csv``, cells of scikit-learn's digits trained with the
default ``cpu`` recipe, full curves and seconds as measured), so many seeds cost nothing while each
charges what a live search would pay. Budget in epochs; per seed and strategy:

- ``random``, ``rea``, ``meta``: every candidate trained to the full length (20 epochs);
- ``tune-asha``: Ray Tune's ``ASHAScheduler`` with Tune's random search (the library's scheduler
  and sampler, driven one trial at a time: :func:`~nas_lightning.search.tune_asha.replay_tune_asha`);
- ``asha``: our ASHA (the same rungs and rule) with random entry;
- ``asha-meta``: our ASHA with the meta-learned predictor choosing who enters.

Scored after the fact only: the best full-length validation accuracy found within 150, 300 and
the whole budget of epochs, the test accuracy of that pick, and the compute each strategy's mean
curve needed to reach the mean best of ``random`` at the whole budget. ``--live`` runs ``tune-asha``
and ``asha-meta`` training for real on digits instead (Ray workers, a fresh store per run).
"""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.search import checkpoint
from nas_lightning.candidates.curves import read_table
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.scoring import PredictorScorer
from nas_lightning.oracles.fidelity import Answer, CurveOracle, FullTrainings
from nas_lightning.oracles.replay import ReplayOracle
from nas_lightning.search import make_strategy
from nas_lightning.search.asha import MetaEntry, RandomEntry, rungs, run_asha
from nas_lightning.search.driver import run_parallel
from nas_lightning.search.meta import MetaOptions
from nas_lightning.search.tune_asha import replay_tune_asha
from nas_lightning.spaces import NB201

log = logging.getLogger(__name__)
TABLE = common.ROOT / "data" / "curves" / "digits_cpu.csv"
STRATEGIES = ("random", "rea", "meta", "tune-asha", "asha", "asha-meta")
GRACE, ETA = 2, 3


def trace(answers: list[Answer], max_epochs: int) -> list[tuple[int, float, float, int]]:
    """After each full-length answer: (epochs done, seconds done, best final accuracy so far, its arch)."""
    out: list[tuple[int, float, float, int]] = []
    for a in answers:
        if a.epochs == max_epochs and (not out or a.value > out[-1][2]):
            out.append((a.epochs_done, a.seconds_done, a.value, a.index))
        elif a.epochs == max_epochs:
            out.append((a.epochs_done, a.seconds_done, out[-1][2], out[-1][3]))
    return out


def best_at(points: list[tuple[int, float, float, int]], epochs: int) -> tuple[float, int] | None:
    """The best final accuracy (and arch) found within ``epochs`` of compute (None: no full training yet)."""
    found = [p for p in points if p[0] <= epochs]
    return (found[-1][2], found[-1][3]) if found else None


def one_run(name: str, table: Any, budget: int, seed: int, scorer: PredictorScorer | None) -> list[Answer]:
    """One search on the replayed table; every answer it got, in order."""
    gen = torch.Generator().manual_seed(seed)
    if name == "tune-asha":
        return replay_tune_asha(table, budget, GRACE, ETA, seed)
    oracle: CurveOracle = ReplayOracle(table, budget)
    if name in ("asha", "asha-meta"):
        options = MetaOptions()
        entry = (RandomEntry(oracle, gen) if name == "asha" else
                 MetaEntry(make_strategy("meta", scorer=scorer, batch=1, beta=options.beta), oracle, gen))
        run_asha(oracle, entry, rungs(table.epochs, GRACE, ETA), ETA)
    else:
        strategy = make_strategy(name, scorer=scorer, beta=MetaOptions().beta) if name == "meta" else make_strategy(name)
        run_parallel(strategy, FullTrainings(oracle), budget // table.epochs, gen, 1)
    return oracle.answers


def summarise(runs: dict[str, list[list[Answer]]], table: Any, budget: int) -> dict[str, Any]:
    """Per strategy: mean best (and standard error) at 150, 300 and ``budget`` epochs, the test
    accuracy of the pick, and the compute its mean curve needed to reach random's mean best at ``budget``."""
    row = {int(a): r for r, a in enumerate(table.archs.tolist())}
    marks = sorted({m for m in (150, 300, budget) if m <= budget})
    grid = list(range(1, budget + 1))
    out: dict[str, Any] = {}
    for name, seeds in runs.items():
        points = [trace(answers, table.epochs) for answers in seeds]
        at: dict[str, Any] = {}
        for m in marks:
            found = [best_at(p, m) for p in points]
            vals = [f[0] for f in found if f is not None]
            at[str(m)] = {"mean": statistics.fmean(vals) if vals else None, "n": len(vals),
                          "se": statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else None}
        picks = [best_at(p, budget) for p in points]
        tests = [float(table.test[row[f[1]]]) for f in picks if f is not None]
        curve = []
        for e in grid:  # mean best over seeds after e epochs (seeds without a full training yet are left out)
            vals = [f[0] for f in (best_at(p, e) for p in points) if f is not None]
            curve.append(statistics.fmean(vals) if len(vals) == len(points) else None)
        out[name] = {"best_at": at, "test_of_pick": statistics.fmean(tests) if tests else None, "mean_curve": curve,
                     "epochs_spent": statistics.fmean(a[-1].epochs_done for a in seeds if a),
                     "seconds_spent": statistics.fmean(a[-1].seconds_done for a in seeds if a),
                     "full_trainings": statistics.fmean(sum(x.epochs == table.epochs for x in a) for a in seeds)}
    goal = out["random"]["best_at"][str(budget)]["mean"] if "random" in out else None
    for s in out.values():
        s["epochs_to_random_best"] = next((e for e, v in zip(grid, s["mean_curve"]) if v is not None and goal is not None and v >= goal), None)
    return {"strategies": out, "random_best": goal}


def run(tiny: bool = False, device: str = "cpu", ckpt_dir: str | None = None, seeds: int | None = None,
        table_path: str | None = None, budget: int | None = None) -> dict[str, Any]:
    """The replay benchmark (see the module)."""
    seeds = seeds or (2 if tiny else 20)
    table = read_table(table_path or TABLE)
    budget = budget or (60 if tiny else 30 * table.epochs)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(ckpt_dir) if ckpt_dir else (Path(tmp) if tiny else common.ROOT)
        ckpt, training = checkpoint("default", root.resolve(), tiny)
        scorer = PredictorScorer(load_predictor(str(ckpt), device, NB201), True, MetaOptions().members)
        runs = {name: [one_run(name, table, budget, seed, scorer) for seed in range(seeds)] for name in STRATEGIES}
    res = {"machine": common.machine(), "table": common.shown(table_path or TABLE), "cells": len(table.archs), "epochs": table.epochs, "budget": budget,
           "seeds": seeds, "grace": GRACE, "eta": ETA, "rungs": list(rungs(table.epochs, GRACE, ETA)), "checkpoint": "runs/default",
           "training": training, "table_best": float(table.final.max()), "seconds": time.perf_counter() - start}
    res.update(summarise(runs, table, budget))
    res["targets"] = targets(res)
    return res


def targets(res: dict[str, Any]) -> dict[str, Any]:
    """asha-meta reaches random's mean best with at most 20 % of the budget; at 150 epochs its mean
    best is at least tune-asha's plus one standard error."""
    s, budget = res["strategies"], res["budget"]
    need = s["asha-meta"]["epochs_to_random_best"]
    ours, tune = s["asha-meta"]["best_at"].get("150"), s["tune-asha"]["best_at"].get("150")
    bar = None if not tune or tune["mean"] is None else tune["mean"] + (tune["se"] or 0.0)
    return {"compute_met": need is not None and need <= 0.2 * budget, "compute_epochs": need, "compute_limit": 0.2 * budget,
            "at150_met": None if bar is None or ours["mean"] is None else ours["mean"] >= bar, "at150": ours and ours["mean"], "at150_bar": bar}


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md."""
    marks = list(res["strategies"]["random"]["best_at"])
    rows = [[name, *[_mean_se(s["best_at"][m]) for m in marks], common.f3(s["test_of_pick"]),
             "-" if s["epochs_to_random_best"] is None else s["epochs_to_random_best"], f"{s['full_trainings']:.1f}",
             f"{s['seconds_spent']:.0f}"] for name, s in res["strategies"].items()]
    t = res["targets"]
    return "\n".join([
        f"Replay of `{res['table']}` ({res['cells']} cells, {res['epochs']} epochs each, best final validation accuracy "
        f"{res['table_best']:.2f} %); budget {res['budget']} epochs, {res['seeds']} seeds per strategy; rungs "
        f"{', '.join(map(str, res['rungs']))} (eta {res['eta']}); predictor `{res['checkpoint']}`.", "",
        common.table(["strategy", *[f"best@{m} ep" for m in marks], "test of pick", f"epochs to {res['random_best']:.2f}",
                      "full trainings", "seconds"], rows), "",
        "best@E: mean (± standard error) over seeds of the best validation accuracy among candidates trained to the full length "
        "within E epochs of compute; test of pick: mean test accuracy of the pick at the whole budget; epochs to X: the first "
        "compute at which the strategy's mean curve reaches random's mean best at the whole budget (- : never); seconds: "
        "training seconds spent, as measured when the table was made.", "",
        f"Targets: asha-meta reaches random's mean best within {t['compute_limit']:.0f} epochs: "
        f"{common.verdict(t['compute_met'])} ({t['compute_epochs']}); asha-meta's best@150 at least tune-asha's plus one "
        f"standard error ({common.f3(t['at150_bar'])}): {common.verdict(t['at150_met'])} ({common.f3(t['at150'])}).",
    ])


def _mean_se(c: dict[str, Any]) -> str:
    if c["mean"] is None:
        return "-"
    return f"{c['mean']:.2f}" + ("" if c["se"] is None else f" ± {c['se']:.2f}")

"""``growth``: how the batched meta-step grows with meta-batch size, K and predictor width, and
how a search grows with its budget: a small table each, with the local log-log slope
(1.0 = linear growth, 0 = flat)."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from benchmarks import common
from benchmarks.maml import batched_step, setup
from benchmarks.scoring import TASK, predictor
from nas_lightning.models.scoring import PredictorScorer
from nas_lightning.search import make_strategy
from nas_lightning.tasks.load import load_task
from nas_lightning.oracles import TableOracle

BASE = {"meta_batch": 32, "steps": 1, "order": "second", "support": 10, "query": 100, "hidden": 128}


def sweeps(tiny: bool) -> dict[str, list[int]]:
    """The values each knob takes (the others stay at :data:`BASE`)."""
    if tiny:
        return {"meta_batch": [2, 4], "support": [3, 6], "hidden": [8, 16], "budget": [3, 6]}
    return {"meta_batch": [8, 16, 32, 64, 128], "support": [5, 10, 20, 50, 100], "hidden": [32, 64, 128, 256, 512],
            "budget": [10, 20, 50, 100, 200]}


def _slopes(xs: list[float], ys: list[float]) -> list[float | None]:
    return [None] + [math.log(ys[i] / ys[i - 1]) / math.log(xs[i] / xs[i - 1]) for i in range(1, len(xs))]


def meta_step(knob: str, values: list[int], base: dict[str, Any], device: str, reps: int) -> list[dict[str, Any]]:
    """Median seconds of the batched meta-step for each value of ``knob``."""
    rows = []
    for v in values:
        cfg = {**base, knob: v}
        module, b = setup(cfg, device)
        t = common.time_fn(lambda: batched_step(module, b), reps, min_seconds=0.2, device=device)["median_s"]
        rows.append({knob: v, "seconds": t, "per_episode_ms": 1e3 * t / cfg["meta_batch"]})
    for r, s in zip(rows, _slopes(values, [r["seconds"] for r in rows])):
        r["slope"] = s
    return rows


def search(budgets: list[int], device: str, ckpt: str | None, tiny: bool) -> list[dict[str, Any]]:
    """Seconds of one run of ``meta`` (8 members) and ``rea`` at each budget (seed 0)."""
    task = load_task(TASK)
    module = predictor(ckpt, device, 16 if tiny else 128)
    rows = []
    for budget in budgets:
        row: dict[str, Any] = {"budget": budget}
        for name in ("meta", "rea"):
            scorer = PredictorScorer(module, task.direction == "max", 8) if name == "meta" else None
            strategy = make_strategy(name, scorer=scorer, beta=0.5)
            oracle = TableOracle(task, budget, seed=0)
            start = time.perf_counter()
            strategy.run(oracle, budget, torch.Generator().manual_seed(0))
            row[name] = time.perf_counter() - start
        rows.append(row)
    for name in ("meta", "rea"):
        for r, s in zip(rows, _slopes(budgets, [r[name] for r in rows])):
            r[f"{name}_slope"] = s
    return rows


def run(tiny: bool = False, device: str = "cpu", ckpt: str | None = None, reps: int | None = None) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready result."""
    reps = reps or (2 if tiny else 5)
    base = {**BASE, "meta_batch": 2, "support": 3, "query": 5, "hidden": 16} if tiny else BASE
    sw = sweeps(tiny)
    res: dict[str, Any] = {"benchmark": "growth", "machine": common.machine(), "device": device, "base": base, "reps": reps}
    for knob in ("meta_batch", "support", "hidden"):
        res[knob] = meta_step(knob, sw[knob], base, device, reps)
    res["search_budget"] = search(sw["budget"], device, ckpt, tiny)
    return res


def markdown(res: dict[str, Any]) -> str:
    """The section for BENCHMARKS.md."""
    b = res["base"]
    out = [f"Batched meta-step, eager (steps {b['steps']}, {b['order']} order, Q = {b['query']}); the others at "
           f"meta-batch {b['meta_batch']}, K = {b['support']}, width {b['hidden']}. Slope: d log(time) / d log(x) "
           "from the row above."]
    names = {"meta_batch": "meta-batch", "support": "K (support)", "hidden": "width"}
    for knob, label in names.items():
        rows = [[r[knob], f"{1e3 * r['seconds']:.1f}", f"{r['per_episode_ms']:.2f}", _f(r["slope"])] for r in res[knob]]
        out += ["", f"**{label}**", "", common.table([label, "ms / meta-step", "ms / episode", "slope"], rows)]
    rows = [[r["budget"], f"{r['meta']:.2f}", _f(r["meta_slope"]), f"{r['rea']:.3f}", _f(r["rea_slope"])]
            for r in res["search_budget"]]
    out += ["", "**search budget** (one run, seed 0; meta with 8 bootstrap members)", "",
            common.table(["budget", "meta s", "meta slope", "rea s", "rea slope"], rows)]
    return "\n".join(out)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"

"""Compare search strategies on one task over several seeds, and report the results.

Each (strategy, seed) run gets a fresh budgeted oracle; the full table is read only afterwards,
through :meth:`Oracle.evaluation_only`, to score what each run found.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from nas_lightning.benchmarks import space
from nas_lightning.benchmarks.oracle import Oracle
from nas_lightning.benchmarks.task import Task
from nas_lightning.errors import UserError
from nas_lightning.search.strategies import Strategy

log = logging.getLogger(__name__)

StrategyFactories = dict[str, Callable[[], Strategy]] | Sequence[tuple[str, Callable[[], Strategy]]]
_TIE = 1e-9  # values this close to the optimum count as the optimum


def checkpoints(budget: int) -> list[int]:
    """Query counts at which regret is reported: 10, 20, 50, 100, 200, 500, ... up to and with ``budget``."""
    marks, scale = [], 10
    while scale <= budget:
        marks += [m for m in (scale, 2 * scale, 5 * scale) if m <= budget]
        scale *= 10
    return sorted(set(marks) | {budget})


def _score_seed(oracle: Oracle, seed: int, seconds: float) -> dict[str, Any]:
    """Score one finished run from its history; the incumbent is the best *observed* arch."""
    view = oracle.evaluation_only()
    opt_value = view.optimum()[1]
    idx, observed = oracle.history()
    true = view.lookup(idx).double() if len(idx) else torch.zeros(0, dtype=torch.float64)
    best_so_far, regret_so_far, inc = [], [], -1
    for t in range(len(idx)):
        if inc < 0 or observed[t] * oracle.sign > observed[inc] * oracle.sign:
            inc = t
        best_so_far.append(float(true[inc]))
        regret_so_far.append(view.regret(float(true[inc])))
    hits = torch.nonzero((true - opt_value).abs() <= _TIE).flatten()
    return {
        "seed": seed,
        "archs": [space.to_string(i) for i in idx.tolist()],
        "values": observed.tolist(),
        "best_so_far": best_so_far,
        "regret_so_far": regret_so_far,
        "best_arch": space.to_string(int(idx[inc])) if inc >= 0 else None,
        "best_value": best_so_far[-1] if best_so_far else None,
        "regret": regret_so_far[-1] if regret_so_far else None,
        "found_optimum_at": int(hits[0]) + 1 if len(hits) else None,
        "seconds": seconds,
        "cost": oracle.cost,
    }


def _padded(curve: list[float], length: int) -> list[float]:
    return (curve + [curve[-1]] * (length - len(curve))) if curve else [math.nan] * length


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def _summarize(per_seed: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    curves = torch.tensor([_padded(s["regret_so_far"], budget) for s in per_seed], dtype=torch.float64)
    mean_curve = curves.nanmean(0) if len(per_seed) else torch.zeros(budget)
    found = [s["found_optimum_at"] for s in per_seed]
    to_opt = statistics.median_low([math.inf if f is None else f for f in found])  # lower median: an int
    counts = Counter(s["best_arch"] for s in per_seed if s["best_arch"] is not None)
    value_of = {s["best_arch"]: s["best_value"] for s in per_seed}
    best_arch = max(counts, key=lambda a: (counts[a], -min(s["regret"] for s in per_seed if s["best_arch"] == a)),
                    default=None)
    return {
        "best_mean": _mean([s["best_value"] for s in per_seed]),
        "regret_mean": _mean([s["regret"] for s in per_seed]),
        "regret_at": {str(m): float(mean_curve[m - 1]) for m in checkpoints(budget)},
        "regret_curve_mean": mean_curve.tolist(),
        "hit_optimum_rate": sum(f is not None for f in found) / len(found),
        "hit_rate_at": {str(m): sum(f is not None and f <= m for f in found) / len(found) for m in checkpoints(budget)},
        "queries_to_optimum_median": None if math.isinf(to_opt) else int(to_opt),
        "best_arch": best_arch,
        "best_arch_value": value_of.get(best_arch),
        "seconds_mean": _mean([s["seconds"] for s in per_seed]),
        "cost_mean": _mean([s["cost"] for s in per_seed]),
        "per_seed": per_seed,
    }


def run_comparison(task: Task, strategies: StrategyFactories, budget: int, seeds: list[int] | int,
                   noisy: bool = False) -> dict[str, Any]:
    """Run every strategy on ``task`` once per seed, each with a fresh oracle, and score the runs.

    Args:
        task: the target task (searched through an oracle only).
        strategies: ``{name: factory}`` or ``[(name, factory), ...]``; a factory builds a fresh strategy.
        budget: queries per run.
        seeds: the seeds, or how many (``0..n-1``).
        noisy: the oracle answers one sampled training seed; scoring still uses the table means.

    Returns:
        A JSON-ready dict: task, direction, optimum, budget, seeds, and per-strategy summaries.

    Raises:
        UserError: for a budget below one, no seeds, no strategies or a repeated strategy name.
    """
    items = list(strategies.items()) if isinstance(strategies, dict) else list(strategies)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if budget < 1:
        raise UserError(f"budget must be at least 1 query, got {budget}")
    if not seed_list:
        raise UserError(f"need at least one seed, got {seeds!r}")
    names = [n for n, _ in items]
    if not items or len(set(names)) != len(names):
        raise UserError(f"need distinct strategy names, got {names}")
    results: dict[str, Any] = {"task": task.name, "direction": task.direction, "budget": budget,
                               "seeds": seed_list, "noisy": noisy, "strategies": {}}
    for name, factory in items:
        per_seed = []
        for seed in seed_list:
            oracle = Oracle(task, budget, noisy=noisy, seed=seed)
            start = time.perf_counter()
            factory().run(oracle, budget, torch.Generator().manual_seed(seed))
            per_seed.append(_score_seed(oracle, seed, time.perf_counter() - start))
        results["strategies"][name] = _summarize(per_seed, budget)
        log.info("%s on %s: mean regret %s", name, task.name, results["strategies"][name]["regret_mean"])
    opt_arch, opt_value = Oracle(task).evaluation_only().optimum()
    results["optimum"] = {"value": opt_value, "arch": space.to_string(opt_arch)}
    return results


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def format_table(results: dict[str, Any]) -> str:
    """A fixed-width table of the per-strategy summaries, one row per strategy."""

    def num(x: float | int | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    first = "10" if "10" in next(iter(results["strategies"].values()), {}).get("regret_at", {}) else None
    head = f"{'strategy':<12} {'best_mean':>10} {'regret_mean':>12} {'hit_rate':>9} {'q_to_opt':>9} {'regret@10':>10}"
    lines = [f"{results['task']} ({results['direction']}), budget {results['budget']}, "
             f"{len(results['seeds'])} seeds, optimum {results['optimum']['value']:.4f}", head, "-" * len(head)]
    for name, r in results["strategies"].items():
        at10 = r["regret_at"].get(first) if first else None
        lines.append(f"{name:<12} {num(r['best_mean'], '.4f'):>10} {num(r['regret_mean'], '.4f'):>12} "
                     f"{r['hit_optimum_rate']:>9.2f} {num(r['queries_to_optimum_median'], 'd'):>9} "
                     f"{num(at10, '.4f'):>10}")
    return "\n".join(lines)


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = results["budget"]
    curves = {n: torch.tensor([_padded(s["regret_so_far"], budget) for s in r["per_seed"]], dtype=torch.float64)
              for n, r in results["strategies"].items()}
    positive = torch.cat([c[c > 0] for c in curves.values()]) if curves else torch.zeros(0)
    floor = float(positive.min()) / 2 if len(positive) else 1e-3
    x = torch.arange(1, budget + 1).numpy()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        c = c.clamp(min=floor)
        lo, hi = torch.nanquantile(c, 0.25, dim=0), torch.nanquantile(c, 0.75, dim=0)
        (line,) = ax.plot(x, c.nanmean(0).numpy(), label=name)
        ax.fill_between(x, lo.numpy(), hi.numpy(), color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_yscale("log")
    ax.set_xlabel("queries")
    ax.set_ylabel(f"regret (floor {floor:.2g})")
    ax.set_title(f"{results['task']}: mean regret over {len(results['seeds'])} seeds (band: 25-75%)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def write_results(results: dict[str, Any], out_dir: Path) -> None:
    """Write ``results.json`` and ``regret.png`` into ``out_dir``, each atomically.

    Both are rendered to temporary files first, so a failure leaves neither half-written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_json = out_dir / f".results.{os.getpid()}.json.tmp"
    tmp_png = out_dir / f".regret.{os.getpid()}.png.tmp"
    try:
        tmp_json.write_text(json.dumps(finite(results), indent=1, allow_nan=False))
        _plot(results, tmp_png)
        os.replace(tmp_json, out_dir / "results.json")
        os.replace(tmp_png, out_dir / "regret.png")
    finally:
        for leftover in (tmp_json, tmp_png):
            leftover.unlink(missing_ok=True)
    log.info("wrote %s and %s", out_dir / "results.json", out_dir / "regret.png")

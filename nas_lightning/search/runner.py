"""Compare search strategies on one task over several seeds, and report the results.

Each (strategy, seed) run gets a fresh budgeted oracle; the full table is read only afterwards,
through :meth:`Oracle.evaluation_only`, to score what each run found. Where an oracle has no
evaluation-only view (nothing knows the optimum), the results hold best-so-far values and say
that regret is unknown instead of failing.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from nas_lightning.errors import UserError
from nas_lightning.files import atomic, json_text
from nas_lightning.search import plot_style
from nas_lightning.search.driver import run_parallel
from nas_lightning.search.strategies import Strategy
from nas_lightning.oracles import Oracle, OracleFactory, OracleSettings
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)

StrategyFactories = dict[str, Callable[[], Strategy]] | Sequence[tuple[str, Callable[[], Strategy]]]
OracleMaker = Callable[[int, str], Oracle]  # (seed, strategy name) -> a fresh budgeted oracle
_TIE = 1e-9  # values this close to the optimum count as the optimum


def regret_marks(budget: int) -> list[int]:
    """Query counts at which regret is reported: 10, 20, 50, 100, 200, 500, ... up to and with ``budget``."""
    marks, scale = [], 10
    while scale <= budget:
        marks += [m for m in (scale, 2 * scale, 5 * scale) if m <= budget]
        scale *= 10
    return sorted(set(marks) | {budget})


def _score_seed(oracle: Oracle, seed: int, seconds: float) -> dict[str, Any]:
    """Score one finished run from its history; the incumbent is the best *observed* arch.

    With an evaluation-only view the incumbent's true (table) value gives best-so-far and regret;
    without one, best-so-far is the observed value and regret is ``None`` (unknown).
    """
    view = oracle.evaluation_only()
    idx, observed = oracle.history()
    if view is None:
        true = observed.double()
    else:
        true = view.lookup(idx).double() if len(idx) else torch.zeros(0, dtype=torch.float64)
    best_so_far, regret_so_far, inc = [], [], -1
    for t in range(len(idx)):
        if inc < 0 or observed[t] * oracle.sign > observed[inc] * oracle.sign:
            inc = t
        best_so_far.append(float(true[inc]))
        regret_so_far.append(None if view is None else view.regret(float(true[inc])))
    hits = [] if view is None else torch.nonzero((true - view.optimum()[1]).abs() <= _TIE).flatten()
    return {
        "seed": seed,
        "archs": [oracle.space.to_string(i) for i in idx.tolist()],
        "values": observed.tolist(),
        "best_so_far": best_so_far,
        "regret_so_far": regret_so_far,
        "best_arch": oracle.space.to_string(int(idx[inc])) if inc >= 0 else None,
        "best_value": best_so_far[-1] if best_so_far else None,
        "regret": regret_so_far[-1] if regret_so_far else None,
        "found_optimum_at": int(hits[0]) + 1 if len(hits) else None,
        "seconds": seconds,
        "cost": oracle.cost,
        **({} if view is not None else {"cost_so_far": torch.tensor(oracle.costs(), dtype=torch.float64).cumsum(0).tolist()}),
    }


def _padded(curve: list[float], length: int) -> list[float]:
    return (curve + [curve[-1]] * (length - len(curve))) if curve else [math.nan] * length


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def _curve(values: list[float | None], budget: int) -> list[float]:
    """A per-query curve padded to ``budget`` with its last value; ``None`` (unknown) as NaN."""
    return _padded([math.nan if v is None else v for v in values], budget)


def _summarize(per_seed: list[dict[str, Any]], budget: int, sign: float) -> dict[str, Any]:
    curves = torch.tensor([_curve(s["regret_so_far"], budget) for s in per_seed], dtype=torch.float64)
    mean_curve = curves.nanmean(0) if len(per_seed) else torch.zeros(budget)
    found = [s["found_optimum_at"] for s in per_seed]
    to_opt = statistics.median_low([math.inf if f is None else f for f in found])  # lower median: an int
    counts = Counter(s["best_arch"] for s in per_seed if s["best_arch"] is not None)
    value_of = {s["best_arch"]: s["best_value"] for s in per_seed}
    # the most often found; ties to the smallest regret, or the best value where regret is unknown
    closeness = {a: max(-s["regret"] if s["regret"] is not None else sign * s["best_value"]
                        for s in per_seed if s["best_arch"] == a) for a in counts}
    best_arch = max(counts, key=lambda a: (counts[a], closeness[a]), default=None)
    return {
        "best_mean": _mean([s["best_value"] for s in per_seed]),
        "regret_mean": _mean([s["regret"] for s in per_seed]),
        "regret_at": {str(m): float(mean_curve[m - 1]) for m in regret_marks(budget)},
        "regret_curve_mean": mean_curve.tolist(),
        "hit_optimum_rate": sum(f is not None for f in found) / len(found),
        "hit_rate_at": {str(m): sum(f is not None and f <= m for f in found) / len(found) for m in regret_marks(budget)},
        "queries_to_optimum_median": None if math.isinf(to_opt) else int(to_opt),
        "best_arch": best_arch,
        "best_arch_value": value_of.get(best_arch),
        "seconds_mean": _mean([s["seconds"] for s in per_seed]),
        "cost_mean": _mean([s["cost"] for s in per_seed]),
        "per_seed": per_seed,
    }


def run_comparison(target: Task | OracleMaker, strategies: StrategyFactories, budget: int,
                   seeds: list[int] | int, noisy: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Run every strategy on a target once per seed, each with a fresh oracle, and score the runs.

    Args:
        target: a table task (its oracles from :class:`~nas_lightning.oracles.OracleFactory`), or a
            callable that builds a fresh budgeted oracle for a seed and the strategy that will search it
            (any :class:`Oracle`, e.g. one that trains; the name labels its progress).
        strategies: ``{name: factory}`` or ``[(name, factory), ...]``; a factory builds a fresh strategy.
        budget: queries per run.
        seeds: the seeds, or how many (``0..n-1``).
        noisy: a table task's oracle answers one sampled training seed; scoring still uses the
            table means (for a callable: only recorded, the callable decides).
        workers: run each strategy's proposer with this many queries pending at once
            (:func:`~nas_lightning.search.driver.run_parallel`); ``None``: the sequential search.

    Returns:
        A JSON-ready dict: task, direction, optimum (``None`` without an evaluation-only view),
        budget, seeds, and per-strategy summaries.

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
    if callable(target):
        make_oracle = target
    else:
        oracles = OracleFactory(OracleSettings(noisy=noisy), budget)
        make_oracle = lambda seed, _: oracles.oracle(target, seed)  # noqa: E731
    probe = make_oracle(seed_list[0], "")  # the target's identity; never queried
    results: dict[str, Any] = {"task": probe.name, "direction": probe.direction, "budget": budget,
                               "seeds": seed_list, "noisy": noisy, "strategies": {}}
    for name, factory in items:
        per_seed = []
        # a table target answers at once: one bar over the seeds (a training oracle shows its own per seed);
        # tqdm draws it only on a terminal
        seeds_shown = seed_list if callable(target) else tqdm(seed_list, desc=f"{name} on {probe.name}", unit="seed",
                                                              leave=False, disable=None)
        for seed in seeds_shown:
            oracle = make_oracle(seed, name)
            start = time.perf_counter()
            if workers is None:
                factory().run(oracle, budget, torch.Generator().manual_seed(seed))
            else:
                run_parallel(factory(), oracle, budget, torch.Generator().manual_seed(seed), workers)
            per_seed.append(_score_seed(oracle, seed, time.perf_counter() - start))
        results["strategies"][name] = summary = _summarize(per_seed, budget, probe.sign)
        if summary["regret_mean"] is not None:
            log.info("%s on %s: mean regret %.4g", name, probe.name, summary["regret_mean"])
        elif summary["best_mean"] is not None:
            log.info("%s on %s: mean best found %.4g (no table of the target: regret unknown)",
                     name, probe.name, summary["best_mean"])
    view = probe.evaluation_only()
    if view is None:
        results["optimum"] = None
        results["note"] = "no evaluation-only view of this target: regret and hits of the optimum are unknown"
        for summary in results["strategies"].values():  # unknown, not zero
            for key in ("hit_optimum_rate", "hit_rate_at", "regret_at", "regret_curve_mean"):
                summary[key] = None
    else:
        opt_arch, opt_value = view.optimum()
        results["optimum"] = {"value": opt_value, "arch": probe.space.to_string(opt_arch)}
    return results


def format_table(results: dict[str, Any]) -> str:
    """A fixed-width table of the per-strategy summaries, one row per strategy."""

    def num(x: float | int | None, fmt: str) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    first = "10" if "10" in (next(iter(results["strategies"].values()), {}).get("regret_at") or {}) else None
    head = f"{'strategy':<12} {'best_mean':>10} {'regret_mean':>12} {'hit_rate':>9} {'q_to_opt':>9} {'regret@10':>10}"
    optimum = "optimum unknown" if results["optimum"] is None else f"optimum {results['optimum']['value']:.4f}"
    lines = [f"{results['task']} ({results['direction']}), budget {results['budget']}, "
             f"{len(results['seeds'])} seeds, {optimum}", head, "-" * len(head)]
    for name, r in results["strategies"].items():
        at10 = r["regret_at"].get(first) if first else None
        lines.append(f"{name:<12} {num(r['best_mean'], '.4f'):>10} {num(r['regret_mean'], '.4f'):>12} "
                     f"{num(r['hit_optimum_rate'], '.2f'):>9} {num(r['queries_to_optimum_median'], 'd'):>9} "
                     f"{num(at10, '.4f'):>10}")
    return "\n".join(lines)


def _plot(results: dict[str, Any], path: Path) -> None:
    """Mean regret (log scale) against queries, or, where no optimum is known, mean best-so-far
    against queries beside each seed's best-so-far against training seconds; all drawn as steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    budget, regret, task = results["budget"], results["optimum"] is not None, results["task"]
    key = "regret_so_far" if regret else "best_so_far"  # no optimum known: plot the best found so far
    curves = {n: torch.tensor([_curve(s[key], budget) for s in r["per_seed"]], dtype=torch.float64)
              for n, r in results["strategies"].items()}
    positive = torch.cat([c[c > 0] for c in curves.values()]) if curves else torch.zeros(0)
    floor = float(positive.min()) / 2 if len(positive) else 1e-3
    styles = plot_style.strategy_styles(list(curves), plt.rcParams["axes.prop_cycle"].by_key()["color"], budget)
    means = {n: c.nanmean(0) for n, c in curves.items()}
    same = plot_style.same_curves(means)
    label = {n: n + (f" (same curve as {same[n]})" if n in same else "") for n in curves}
    x = torch.arange(1, budget + 1).numpy()
    fig, axes = plt.subplots(1, 1 if regret else 2, figsize=(7.5 if regret else 13, 4.8), squeeze=False)
    ax = axes[0, 0]
    for name, c in curves.items():
        c = c.clamp(min=floor) if regret else c
        lo, hi = torch.nanquantile(c, 0.25, dim=0), torch.nanquantile(c, 0.75, dim=0)
        ax.step(x, c.nanmean(0).numpy(), where="post", label=label[name], **styles[name])
        ax.fill_between(x, lo.numpy(), hi.numpy(), step="post", color=styles[name]["color"], alpha=0.15, linewidth=0)
    band = [Patch(color="grey", alpha=0.3, label="band: 25-75% of the seeds")] if len(results["seeds"]) > 1 else []
    if regret:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plot_style.plain_log_formatter())
        ax.yaxis.set_minor_formatter(plot_style.plain_log_formatter())
        ax.set_ylabel(plot_style.regret_label(task, results["direction"]))
        if any(bool((c <= 0).any()) for c in curves.values()):
            ax.axhline(floor, color="grey", linestyle=(0, (1, 3)), linewidth=1,
                       label=f"regret 0 (optimum found), drawn at {floor:.2g}")
    else:
        ax.set_ylabel(plot_style.value_label(task))
        wall = axes[0, 1]  # against the training time spent (each seed's own curve)
        for k, (name, r) in enumerate(results["strategies"].items()):
            for i, s in enumerate(r["per_seed"]):
                every = max(1, len(s["best_so_far"]) // 8)
                wall.step(s.get("cost_so_far", []), s["best_so_far"], where="post", label=name if i == 0 else None,
                          **(styles[name] | {"markevery": (k % every, every)}))
        wall.set_xlabel("training seconds spent (as stored)")
        wall.set_ylabel(plot_style.value_label(task))
        wall.set_title("each seed against training time")
        wall.grid(True, alpha=0.3)
        wall.legend()
    ax.set_xlabel("queries")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    what = "regret" if regret else "best found so far"
    ax.set_title(f"{task}: mean {what} over {len(results['seeds'])} seed{'s' if len(results['seeds']) > 1 else ''}")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + band)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    plt.close(fig)


def write_results(results: dict[str, Any], out_dir: Path) -> None:
    """Write ``results.json`` and the plot into ``out_dir``, each atomically: ``regret.png``, or
    ``best_so_far.png`` (against queries and training seconds) where no optimum is known.

    Both are rendered to temporary files first, so a failure leaves neither half-written.
    """
    out_dir = Path(out_dir)
    plot = out_dir / ("regret.png" if results["optimum"] is not None else "best_so_far.png")
    with atomic(out_dir / "results.json", plot) as (tmp_json, tmp_png):
        tmp_json.write_text(json_text(results))
        _plot(results, tmp_png)
    log.debug("wrote %s and %s", out_dir / "results.json", plot)

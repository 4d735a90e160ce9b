"""How ``compare``'s plots label and draw their curves: the metric's name and unit on the y axis,
one line style and marker per strategy (so identical curves stay visible), and plain numbers on a
logarithmic axis."""

from __future__ import annotations

from typing import Any, Sequence

import torch

# metric name (the last part of a table task's name) -> (what it is, unit)
_METRICS = {"val_acc": "validation accuracy", "test_acc": "test accuracy", "train_time": "training time",
            "latency": "latency", "params": "parameters"}
_UNITS = {"val_acc": "%", "test_acc": "%", "train_time": "s", "latency": "s", "params": "millions"}
_SUFFIX_UNITS = {"_ms": "ms", "_us": "µs", "_s": "s"}
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def metric_axis(task: str) -> tuple[str, str | None]:
    """What a task's values are and their unit (``None``: not known), from the task's name.

    ``train:...`` tasks answer validation accuracy in percent; NB201 tables hold accuracies in
    percent, NAS-Bench-Graph's as fractions; a CSV column's unit is read from its suffix (``_ms``).
    """
    if task.startswith("train:"):
        return "validation accuracy", "%"
    if task.startswith("csv:"):
        column = task.partition("#")[2].partition("@")[0] or "value"
        unit = next((u for s, u in _SUFFIX_UNITS.items() if column.lower().endswith(s)), None)
        return column, unit
    kind, metric = task.split("/")[0], task.split("/")[-1]
    what = _METRICS.get(metric, metric)
    unit = _UNITS.get(metric)
    if kind == "nbg" and unit == "%":
        unit = "fraction"
    return what, unit


def value_label(task: str) -> str:
    """The y label of best-so-far curves, e.g. ``best validation accuracy found so far (%)``."""
    what, unit = metric_axis(task)
    return f"best {what} found so far" + (f" ({unit})" if unit else "")


def regret_label(task: str, direction: str) -> str:
    """The y label of regret curves, e.g. ``regret: validation accuracy below the optimum (% points)``."""
    what, unit = metric_axis(task)
    side = "below" if direction == "max" else "above"
    unit = "% points" if unit == "%" else unit
    return f"regret: {what} {side} the optimum" + (f" ({unit})" if unit else "")


def strategy_styles(names: Sequence[str], colors: Sequence[str], points: int) -> dict[str, dict[str, Any]]:
    """Matplotlib keyword arguments per strategy: its own colour, line style, marker (placed at
    staggered points) and width (the first drawn widest), so a curve drawn over an identical one
    leaves it visible."""
    every = max(1, points // 8)
    return {n: {"color": colors[i % len(colors)], "linestyle": _LINESTYLES[i % len(_LINESTYLES)],
                "marker": _MARKERS[i % len(_MARKERS)], "markevery": (min(i * max(1, every // len(names)), points - 1), every),
                "linewidth": max(1.2, 2.8 - 0.5 * i), "markersize": 5}
            for i, n in enumerate(names)}


def same_curves(curves: dict[str, torch.Tensor]) -> dict[str, str]:
    """For each strategy whose curve equals an earlier strategy's (NaN as NaN), that strategy's name."""
    names, same = list(curves), {}
    for i, name in enumerate(names):
        for earlier in names[:i]:
            a, b = curves[name], curves[earlier]
            if a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all()):
                same[name] = same.get(earlier, earlier)
                break
    return same


def plain_log_formatter() -> Any:
    """A log-axis tick formatter writing ``0.6`` and ``20`` instead of ``6x10^-1`` and ``2x10^1``."""
    from matplotlib.ticker import LogFormatterSciNotation

    class PlainLog(LogFormatterSciNotation):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    return PlainLog(labelOnlyBase=False)

"""compare's plot reads on its own: whole-number query ticks, the metric and its unit on the y axis,
identical curves told apart, both panels drawn as steps, and every annotation in the legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from nas_lightning.search import runner

matplotlib.use("Agg")


def _seed(curve: list[float], key: str) -> dict:
    return {"seed": 0, key: curve, "best_so_far": curve, "cost_so_far": [1.5 * (i + 1) for i in range(len(curve))]}


def _results(task: str, regret: bool) -> dict:
    key = "regret_so_far" if regret else "best_so_far"
    first, second = ([4.0, 1.0, 0.0], [2.0, 2.0, 0.5]) if regret else ([40.0, 55.0, 55.0], [50.0, 50.0, 61.0])
    strategies = {"meta": [first, first], "rea": [second, first], "random": [second, first]}  # rea = random
    return {"task": task, "direction": "max", "budget": 3, "seeds": [0, 1], "noisy": False,
            "optimum": {"value": 91.6, "arch": "x"} if regret else None,
            "strategies": {n: {"per_seed": [_seed(c, key) for c in curves]} for n, curves in strategies.items()}}


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    import matplotlib.pyplot as plt

    kept: list = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    return kept


@pytest.mark.parametrize(("task", "regret", "unit"), [("nb201/cifar10/val_acc", True, "(% points)"),
                                                      ("train:digits", False, "(%)")])
def test_plot_has_integer_query_ticks_labelled_units_and_visible_identical_curves(
        task: str, regret: bool, unit: str, tmp_path: Path, figures: list) -> None:
    runner.write_results(_results(task, regret), tmp_path)
    (fig,) = figures
    queries = fig.axes[0]
    assert queries.get_xlabel() == "queries"
    lo, hi = queries.get_xlim()
    ticks = [t for t in queries.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    for ax in fig.axes:
        assert ax.get_ylabel().endswith(unit) and "accuracy" in ax.get_ylabel()
        lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_") and "regret 0" not in ln.get_label()]
        assert lines and all(ln.get_drawstyle() == "steps-post" for ln in lines)  # both panels drawn alike
        rea, random = (next(ln for ln in lines if ln.get_label().split()[0] == n) for n in ("rea", "random"))
        assert (rea.get_linestyle(), rea.get_marker()) != (random.get_linestyle(), random.get_marker())
    legend = [t.get_text() for t in queries.get_legend().get_texts()]
    assert "random (same curve as rea)" in legend and "band: 25-75% of the seeds" in legend
    if regret:  # a regret of 0 is drawn at a floor on the log axis: the legend says so, the axis label does not
        assert any(t.startswith("regret 0 (optimum found), drawn at") for t in legend)
        assert "floor" not in queries.get_ylabel()


@pytest.mark.parametrize(("task", "direction", "label"), [
    ("nb201/cifar100/val_acc", "max", "regret: validation accuracy below the optimum (% points)"),
    ("nbg/cora/val_acc", "max", "regret: validation accuracy below the optimum (fraction)"),
    ("nb201/cifar10/latency", "min", "regret: latency above the optimum (s)"),
    ("csv:devices/pixel3.csv#latency_ms", "min", "regret: latency_ms above the optimum (ms)"),
    ("csv:mine.csv#score@max", "max", "regret: score below the optimum"),
])
def test_regret_axis_names_the_metric_and_its_unit(task: str, direction: str, label: str) -> None:
    from nas_lightning.search.plot_style import regret_label

    assert regret_label(task, direction) == label

"""The NAS-Bench-Graph leave-one-dataset-out benchmark: its helpers, and one tiny fold end to end."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from benchmarks import __main__ as bench
from benchmarks import graph
from benchmarks.graph_report import missed, regret_gap, targets
from nas_lightning.errors import UserError
from nas_lightning.spaces import NBG
from nas_lightning.tasks.task import Task


def _task(name: str, values: torch.Tensor, direction: str = "max") -> Task:
    return Task(name=name, direction=direction, archs=NBG.all_indices(), table=values.double(), space=NBG)


def test_mean_source_averages_standardised_tables_with_their_direction() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(NBG.size, generator=gen)
    b = 1000 * torch.rand(NBG.size, generator=gen)  # another scale: standardising must equalise them
    mean = graph.mean_source([_task("nbg/x/val_acc", a), _task("nbg/y/latency", b, "min")])
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    assert torch.allclose(mean.table, (z(a.double()) - z(b.double())) / 2) and mean.direction == "max"
    with pytest.raises(ValueError):
        graph.mean_source([Task(name="part", direction="max", archs=torch.arange(5), table=torch.rand(5), space=NBG)])


def test_top_share_threshold_and_first_hit() -> None:
    values = torch.arange(2000, dtype=torch.float64)  # top 0.1 %: the best 2, i.e. >= 1998
    assert graph.top_threshold(values) == 1998.0
    assert graph.first_hit([5.0, 1998.0, 1999.0], 1998.0) == 2 and graph.first_hit([5.0, 6.0], 1998.0) is None


def test_targets_judge_the_graph_benchmark_figures() -> None:
    def fold(meta: float, mean: float, q: int | None, regret: float) -> dict:
        return {"rank": {"10": {"meta": {"spearman_mean": meta}, "transfer_mean": {"spearman_mean": mean}}},
                "compare": {"strategies": {"meta": {"queries_to_top_median": q, "val_regret": regret},
                                           "rea": {"val_regret": 0.01}}}}

    good = {"ks": [10], "folds": {f"d{i}": fold(0.6, 0.5, 50, 0.005) for i in range(8)}}
    assert all(t["met"] for t in targets(good).values())
    good["targets"] = targets(good)
    assert missed(good) == []
    bad = {"ks": [10], "folds": {**good["folds"], "d0": fold(0.1, 0.9, None, 0.02)}}
    bad["targets"] = targets(bad)
    assert not bad["targets"]["regret_below_rea"]["met"] and "d0" in missed(bad)[-1]


def test_regret_gap_with_its_standard_error_and_seed_blocks() -> None:
    meta = [0.001 * (i % 4) for i in range(20)] + [0.0025] * 20  # block means 0.0015 and 0.0025
    rea = [0.002] * 20 + [0.0005 + 0.002 * (i % 2) for i in range(20)]  # block means 0.002 and 0.0015
    gap = regret_gap({"meta": {"val_regret_per_seed": meta}, "rea": {"val_regret_per_seed": rea}})
    m, r = sum(meta) / 40, sum(rea) / 40
    se = math.sqrt(statistics.variance(meta) / 40 + statistics.variance(rea) / 40)
    assert gap["diff"] == pytest.approx(m - r) and gap["se"] == pytest.approx(se) and gap["z"] == pytest.approx((m - r) / se)
    assert gap["blocks_below"] == [True, False]
    assert regret_gap({"meta": {"val_regret": 0.1}, "rea": {"val_regret": 0.2}}) is None  # no per-seed figures


def test_bad_schedule_fails_before_any_training(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="local_parents >= 1"):
        bench.main(["graph", "--tiny", "--out", str(tmp_path / "out"), "--schedule", "0", "4"])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # two tiny trainings in subprocesses
def test_tiny_fold_end_to_end(tmp_path: Path) -> None:
    assert bench.main(["graph", "--tiny", "--out", str(tmp_path), "--device", "cpu"]) == 0
    res = json.loads((tmp_path / "graph.json").read_text())
    report = (tmp_path / "graph.md").read_text()
    assert res["targets"] is None and "## NAS-Bench-Graph" in report
    (held, fold), = res["folds"].items()
    schedule = fold["compare"]["meta_schedule"]
    assert schedule["large_space"] and "mutations of the best measured architecture" in report
    assert held not in fold["trained_on"] and fold["training"]["wall_s"] > 0
    assert "nbg/" + held not in fold["training"]["train_command"]  # the held-out tables never reach training
    for row in fold["rank"].values():
        assert set(graph.RANK_METHODS) <= set(row) and all(math.isfinite(r["spearman_mean"]) for r in row.values())
    strategies = fold["compare"]["strategies"]
    assert set(strategies) == set(graph.STRATEGIES)
    for s in strategies.values():
        assert s["val_regret"] >= 0 and s["test_regret"] >= -1e-12 and len(s["queries_to_top"]) == res["seeds"]
        assert s["val_regret"] == pytest.approx(statistics.fmean(s["val_regret_per_seed"]))

"""The comparison runner: fields, consistency with the per-seed histories, files, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nas_lightning.spaces import NB201
from nas_lightning.tasks import load
from nas_lightning.tasks.task import Task
from nas_lightning.errors import UserError
from nas_lightning.search import LocalSearch, RandomSearch, RegularizedEvolution, make_strategy
from nas_lightning.search import runner
from nas_lightning.search.runner import format_table, regret_marks, run_comparison, write_results

FACTORIES = {"random": RandomSearch, "rea": RegularizedEvolution, "local": LocalSearch}


@pytest.fixture(scope="module")
def cifar10() -> Task:
    return load.load_tasks("nb201/cifar10/val_acc")[0]


@pytest.fixture(scope="module")
def results(cifar10: Task) -> dict:
    return run_comparison(cifar10, FACTORIES, budget=30, seeds=[0, 1, 2])


@pytest.fixture(scope="module")
def small() -> Task:
    """40 archs, lower is better: every run of budget 40 must find the optimum."""
    archs = torch.arange(100, 100 + 40 * 311, 311)
    return Task(name="test/small", direction="min", archs=archs, table=torch.sin(archs.double()) + 2.0)


def test_checkpoints() -> None:
    assert regret_marks(5) == [5]
    assert regret_marks(30) == [10, 20, 30]
    assert regret_marks(100) == [10, 20, 50, 100]
    assert regret_marks(250) == [10, 20, 50, 100, 200, 250]


def test_top_level_fields(results: dict, cifar10: Task) -> None:
    arch, value = cifar10.best()
    assert results["task"] == "nb201/cifar10/val_acc" and results["direction"] == "max"
    assert results["budget"] == 30 and results["seeds"] == [0, 1, 2]
    assert results["optimum"] == {"value": pytest.approx(value), "arch": NB201.to_string(arch)}
    assert list(results["strategies"]) == list(FACTORIES)


def test_summaries_agree_with_histories(results: dict, cifar10: Task) -> None:
    opt_arch, opt = results["optimum"]["arch"], results["optimum"]["value"]
    for r in results["strategies"].values():
        seeds = r["per_seed"]
        assert [s["seed"] for s in seeds] == [0, 1, 2]
        for s in seeds:
            assert len(s["archs"]) == len(set(s["archs"])) == 30
            values = cifar10.lookup(torch.tensor([NB201.from_string(a) for a in s["archs"]]))
            assert s["values"] == pytest.approx(values.tolist())
            running = torch.cummax(values, 0).values
            assert s["best_so_far"] == pytest.approx(running.tolist())
            assert s["regret_so_far"] == pytest.approx((opt - running).tolist())
            assert min(s["regret_so_far"]) >= 0
            assert all(a >= b for a, b in zip(s["regret_so_far"], s["regret_so_far"][1:]))
            assert s["best_value"] == pytest.approx(float(running[-1]))
            assert s["found_optimum_at"] == (s["archs"].index(opt_arch) + 1 if opt_arch in s["archs"] else None)
        assert r["best_mean"] == pytest.approx(sum(s["best_value"] for s in seeds) / 3)
        assert r["regret_mean"] == pytest.approx(opt - r["best_mean"])
        assert r["hit_optimum_rate"] == pytest.approx(sum(opt_arch in s["archs"] for s in seeds) / 3)
        for m, rate in r["hit_rate_at"].items():  # found within the first m queries
            assert rate == pytest.approx(sum(opt_arch in s["archs"][: int(m)] for s in seeds) / 3)
        assert list(r["regret_at"]) == ["10", "20", "30"]
        at = list(r["regret_at"].values())
        assert all(x >= 0 for x in at) and all(a >= b for a, b in zip(at, at[1:]))
        assert at[-1] == pytest.approx(r["regret_mean"])
        assert r["regret_at"]["10"] == pytest.approx(sum(s["regret_so_far"][9] for s in seeds) / 3)
        assert r["best_arch"] in {s["best_arch"] for s in seeds}
        assert r["seconds_mean"] > 0 and r["cost_mean"] > 0


def test_optimum_found_on_a_small_task(small: Task) -> None:
    res = run_comparison(small, [("random", RandomSearch), ("local", LocalSearch)], budget=40, seeds=4)
    opt_arch, opt = small.best()
    assert res["direction"] == "min" and res["optimum"]["value"] == pytest.approx(opt)
    for r in res["strategies"].values():
        assert r["hit_optimum_rate"] == 1.0 and r["regret_mean"] == pytest.approx(0.0, abs=1e-12)
        found = sorted(s["found_optimum_at"] for s in r["per_seed"])
        assert r["queries_to_optimum_median"] == found[1]  # lower median of four
        assert all(s["archs"][s["found_optimum_at"] - 1] == NB201.to_string(opt_arch) for s in r["per_seed"])
        assert r["best_arch"] == NB201.to_string(opt_arch)


def test_queries_to_optimum_is_none_when_most_seeds_miss(results: dict) -> None:
    for r in results["strategies"].values():
        hits = sum(s["found_optimum_at"] is not None for s in r["per_seed"])
        assert (r["queries_to_optimum_median"] is None) == (hits < 2)


def test_same_seeds_same_results(cifar10: Task, results: dict) -> None:
    again = run_comparison(cifar10, {"rea": RegularizedEvolution}, budget=30, seeds=[0, 1, 2])
    assert [s["archs"] for s in again["strategies"]["rea"]["per_seed"]] == \
        [s["archs"] for s in results["strategies"]["rea"]["per_seed"]]


def test_noisy_oracle_is_scored_on_table_means(cifar10: Task) -> None:
    res = run_comparison(cifar10, {"random": RandomSearch}, budget=20, seeds=[0], noisy=True)
    s = res["strategies"]["random"]["per_seed"][0]
    means = cifar10.lookup(torch.tensor([NB201.from_string(a) for a in s["archs"]]))
    assert s["values"] != pytest.approx(means.tolist())  # observed: one training seed each
    assert min(abs(s["best_value"] - m) for m in means.tolist()) < 1e-9
    assert min(s["regret_so_far"]) >= 0


def test_transfer_through_the_registry(cifar10: Task) -> None:
    source = load.load_tasks("nb201/cifar100/val_acc")[0]
    res = run_comparison(cifar10, {"transfer": lambda: make_strategy("transfer", source=source)}, 10, [0, 1])
    assert res["strategies"]["transfer"]["regret_at"]["10"] < 1.0  # cifar100 ranks cifar10 well


def test_format_table(results: dict) -> None:
    text = format_table(results)
    lines = text.splitlines()
    assert "nb201/cifar10/val_acc" in lines[0]
    assert "regret@10" in lines[1]
    rows = {line.split()[0]: line for line in lines[3:]}
    assert set(rows) == set(FACTORIES)
    assert f"{results['strategies']['rea']['regret_at']['10']:.4f}" in rows["rea"]


def test_write_results(results: dict, tmp_path: Path) -> None:
    write_results(results, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["regret.png", "results.json"]
    loaded = json.loads((tmp_path / "out" / "results.json").read_text())
    assert loaded["strategies"]["rea"]["regret_at"] == pytest.approx(results["strategies"]["rea"]["regret_at"])
    assert (tmp_path / "out" / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_results_is_atomic(results: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "results.json").write_text("old")

    def broken(*_: object) -> None:
        raise RuntimeError("plot failed")

    monkeypatch.setattr(runner, "_plot", broken)
    with pytest.raises(RuntimeError):
        write_results(results, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    assert (tmp_path / "results.json").read_text() == "old"


def test_non_finite_values_become_null(results: dict, tmp_path: Path) -> None:
    broken = json.loads(json.dumps(results))
    broken["strategies"]["rea"]["best_mean"] = math.nan
    write_results(broken, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["strategies"]["rea"]["best_mean"] is None


def test_user_errors(cifar10: Task) -> None:
    with pytest.raises(UserError, match="budget"):
        run_comparison(cifar10, FACTORIES, budget=0, seeds=1)
    with pytest.raises(UserError, match="seed"):
        run_comparison(cifar10, FACTORIES, budget=5, seeds=[])
    with pytest.raises(UserError, match="distinct"):
        run_comparison(cifar10, [("a", RandomSearch), ("a", LocalSearch)], budget=5, seeds=1)


@pytest.mark.parametrize("n", [2, 3, 7, 50, 600])
def test_kendall_tau_b_matches_torchmetrics_with_ties(n: int) -> None:
    """The O(n log n) Kendall tau-b agrees with torchmetrics' pairwise one, ties in either input."""
    from torchmetrics.functional import kendall_rank_corrcoef

    from nas_lightning.rankers.ranking import kendall_tau_b

    g = torch.Generator().manual_seed(n)
    for levels in (2, 5, 10_000):  # heavy ties ... almost none
        a = torch.randint(0, levels, (n,), generator=g).double()
        for b in (a + torch.randint(0, 3, (n,), generator=g), torch.randn(n, generator=g, dtype=torch.float64), -a):
            want, got = float(kendall_rank_corrcoef(a, b.double())), kendall_tau_b(a, b.double())
            assert (want != want and got != got) or abs(want - got) < 1e-6, (levels, want, got)

"""The oracle: budgeted, counted, ordered access to a target task."""

from __future__ import annotations

import pytest
import torch

from nas_lightning.spaces import NB201
from nas_lightning.tasks import embedded
from nas_lightning.oracles import BudgetExhausted, EvaluationView, TableOracle
from nas_lightning.tasks.task import Task
from nas_lightning.errors import UserError


@pytest.fixture(scope="module")
def val_task() -> Task:
    return embedded.load_embedded("cifar10", "val_acc")


def _small_task(direction: str = "min", report_only: bool = False) -> Task:
    archs = torch.tensor([3, 10, 42, 100, 999])
    return Task(
        name=f"toy/{direction}",
        direction=direction,
        archs=archs,
        table=torch.tensor([5.0, 1.0, 7.0, 3.0, 2.0], dtype=torch.float64),
        cost=torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0], dtype=torch.float64),
        report_only=report_only,
    )


def _archs(n: int, seed: int = 0) -> list[int]:
    return NB201.sample(n, torch.Generator().manual_seed(seed)).tolist()


def test_query_returns_table_values_in_order(val_task):
    oracle = TableOracle(val_task)
    archs = _archs(20)
    got = oracle.query(archs)
    assert got.dtype == torch.float64 and got.shape == (20,)
    torch.testing.assert_close(got, val_task.lookup(torch.tensor(archs)).to(torch.float64))
    # ints, lists and tensors are all accepted
    assert float(oracle.query(archs[3])[0]) == float(got[3])
    assert torch.equal(oracle.query(torch.tensor(archs[:4])), got[:4])
    assert oracle.num_queries == 20
    assert oracle.remaining is None
    assert oracle.name == val_task.name and oracle.direction == "max" and oracle.sign == 1.0
    assert torch.equal(oracle.archs, val_task.archs)


def test_budget_enforced(val_task):
    oracle = TableOracle(val_task, budget=5)
    archs = _archs(8, seed=1)
    oracle.query(archs[:3])
    assert oracle.remaining == 2
    with pytest.raises(BudgetExhausted):
        oracle.query(archs[3:])  # the 4th and 5th fit, the 6th does not
    assert oracle.num_queries == 5 and oracle.remaining == 0
    hist, vals = oracle.history()
    assert hist.tolist() == archs[:5]
    torch.testing.assert_close(vals, val_task.lookup(torch.tensor(archs[:5])).to(torch.float64))
    # seen architectures stay free after the budget is spent
    assert torch.equal(oracle.query(archs[:5]), vals)
    with pytest.raises(BudgetExhausted):
        oracle.query(archs[7])
    assert oracle.num_queries == 5
    assert oracle.seen(torch.tensor(archs)).tolist() == [True] * 5 + [False] * 3


def test_budget_of_one(val_task):
    oracle = TableOracle(val_task, budget=1)
    oracle.query([7, 7, 7])
    assert oracle.num_queries == 1
    with pytest.raises(BudgetExhausted):
        oracle.query([7, 8])
    assert oracle.history()[0].tolist() == [7]


def test_repeated_architecture_charged_once(val_task):
    oracle = TableOracle(val_task, budget=3)
    a, b = _archs(2, seed=2)
    out = oracle.query([a, a, b, a, b])
    assert oracle.num_queries == 2
    assert out[0] == out[1] == out[3] and out[2] == out[4]
    oracle.query(a)
    assert oracle.num_queries == 2
    assert oracle.history()[0].tolist() == [a, b]


def test_history_is_ordered(val_task):
    oracle = TableOracle(val_task)
    archs = _archs(12, seed=3)
    for a in archs[:6]:
        oracle.query(a)
    oracle.query(archs[6:] + archs[:3])
    idx, vals = oracle.history()
    assert idx.tolist() == archs
    torch.testing.assert_close(vals, val_task.lookup(torch.tensor(archs)).to(torch.float64))


def test_best_respects_direction():
    for direction, best in (("min", (10, 1.0)), ("max", (42, 7.0))):
        oracle = TableOracle(_small_task(direction))
        assert oracle.best() is None
        oracle.query([3, 10, 42, 100])
        assert oracle.best() == best
        assert oracle.sign == (1.0 if direction == "max" else -1.0)
    oracle = TableOracle(_small_task("min"))
    oracle.query([42, 100])
    assert oracle.best() == (100, 3.0)


def test_query_outside_the_table_raises_key_error():
    oracle = TableOracle(_small_task("min"), budget=3)
    with pytest.raises(KeyError):
        oracle.query([3, 4])
    assert oracle.num_queries == 0  # a query naming an architecture the task lacks is refused whole
    assert oracle.history()[0].tolist() == []


def test_cost_sums_train_time(val_task):
    oracle = TableOracle(val_task)
    assert oracle.cost == 0.0
    archs = _archs(10, seed=4)
    oracle.query(archs + archs[:3])
    expect = float(val_task.cost[torch.tensor(archs)].sum())
    assert oracle.cost == pytest.approx(expect, rel=1e-9)
    assert expect > 0
    toy = TableOracle(_small_task("min"))
    toy.query([10, 999, 10])
    assert toy.cost == pytest.approx(70.0)


def test_noisy_mode_returns_seed_values_and_is_reproducible(val_task):
    archs = _archs(60, seed=5)
    a = TableOracle(val_task, noisy=True, seed=11).query(archs)
    b = TableOracle(val_task, noisy=True, seed=11).query(archs)
    c = TableOracle(val_task, noisy=True, seed=12).query(archs)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    seeds = val_task.seed_table[torch.tensor(archs)]
    for k in range(len(archs)):
        row = seeds[k][~torch.isnan(seeds[k])].tolist()
        assert float(a[k]) in row and float(c[k]) in row
    # the noisy value differs from the mean somewhere: it is not the table
    mean = val_task.lookup(torch.tensor(archs)).to(torch.float64)
    assert not torch.allclose(a, mean)
    # a repeated query returns the same draw
    o = TableOracle(val_task, noisy=True, seed=11)
    first = o.query(archs[:5])
    assert torch.equal(o.query(archs[:5]), first)


def test_noisy_mode_without_seeds_gives_the_table():
    oracle = TableOracle(_small_task("max"), noisy=True, seed=0)
    assert oracle.query([3, 42]).tolist() == [5.0, 7.0]


@pytest.mark.parametrize("budget", [0, -1, -100])
def test_budget_below_one_is_a_user_error(val_task, budget):
    with pytest.raises(UserError, match=str(budget)):
        TableOracle(val_task, budget=budget)


def test_report_only_task_is_a_user_error():
    task = _small_task("max", report_only=True)
    with pytest.raises(UserError, match="toy/max"):
        TableOracle(task)


def test_evaluation_only_gives_optimum_and_regret(val_task):
    oracle = TableOracle(val_task, budget=2)
    view = oracle.evaluation_only()
    assert isinstance(view, EvaluationView)
    idx, opt = view.optimum()
    assert (idx, opt) == val_task.best()
    assert opt == pytest.approx(91.61, abs=0.01)
    assert view.regret(opt) == 0.0
    assert view.regret(opt - 3.5) == pytest.approx(3.5)
    worst = float(view.values().min())
    assert view.regret(worst) == pytest.approx(opt - worst)
    assert torch.equal(view.archs, val_task.archs)
    assert torch.equal(view.lookup(torch.tensor([idx])), val_task.lookup(torch.tensor([idx])))
    assert oracle.num_queries == 0  # the evaluation path is not charged

    mview = TableOracle(_small_task("min")).evaluation_only()
    assert mview.optimum() == (10, 1.0)
    assert mview.regret(3.0) == pytest.approx(2.0)
    assert mview.regret(1.0) == 0.0
    assert all(mview.regret(float(v)) >= 0 for v in mview.values())


@pytest.mark.parametrize("noisy", [False, True])
def test_state_dict_round_trip_continues_identically(val_task, noisy):
    archs = _archs(30, seed=6)
    a = TableOracle(val_task, budget=25, noisy=noisy, seed=3)
    a.query(archs[:10])
    state = a.state_dict()
    b = TableOracle(val_task, budget=25, noisy=noisy, seed=99)
    b.load_state_dict(state)
    assert b.num_queries == a.num_queries == 10
    assert b.remaining == a.remaining == 15
    assert b.best() == a.best()
    assert b.cost == pytest.approx(a.cost)
    for o in (a, b):
        assert torch.equal(o.history()[0], torch.tensor(archs[:10]))
    # continuing: the same values, the same draws, the same budget
    ra = a.query(archs[5:25])
    rb = b.query(archs[5:25])
    assert torch.equal(ra, rb)
    for x, y in zip(a.history(), b.history()):
        assert torch.equal(x, y)
    with pytest.raises(BudgetExhausted):
        b.query(archs[25])
    # the state is a snapshot: later queries on the source do not leak into it
    assert len(state["order"]) == 10


def test_state_dict_restores_budget(val_task):
    a = TableOracle(val_task, budget=4)
    a.query(_archs(2, seed=7))
    b = TableOracle(val_task)
    b.load_state_dict(a.state_dict())
    assert b.budget == 4 and b.remaining == 2


def test_negative_index_is_not_in_the_table(val_task):
    assert val_task.contains(torch.tensor([-1])).tolist() == [False]
    oracle = TableOracle(val_task, budget=3)
    with pytest.raises(KeyError):
        oracle.query(-1)
    assert oracle.num_queries == 0

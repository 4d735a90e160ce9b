"""Search strategies: budgets, continuing rounds, determinism, partial tasks, no leaks."""

from __future__ import annotations


import pytest
import torch

from nas_lightning.spaces import NB201
from nas_lightning.tasks import load
from nas_lightning.oracles import TableOracle
from nas_lightning.tasks.task import Task
from nas_lightning.errors import UserError
from nas_lightning.search import STRATEGIES, MetaSearch, RegularizedEvolution, Reinforce, Strategy, make_strategy
from nas_lightning.search.state import quota
from tests.conftest import GuardedTask, only_from

NAMES = list(STRATEGIES)


@pytest.fixture(scope="module")
def cifar10() -> Task:
    return load.load_tasks("nb201/cifar10/val_acc")[0]


@pytest.fixture(scope="module")
def cifar100() -> Task:
    return load.load_tasks("nb201/cifar100/val_acc")[0]


@pytest.fixture(scope="module")
def partial(cifar10: Task) -> Task:
    """Every 37th arch, as an error rate (lower is better): 423 archs, a 'min' task."""
    archs = torch.arange(3, NB201.size, 37)
    return Task(name="test/partial_err", direction="min", archs=archs, table=100.0 - cifar10.lookup(archs))


class TableScorer:
    """A fake predictor: members are a source table and two perturbed copies; records its calls."""

    def __init__(self, source: Task) -> None:
        base = torch.full((NB201.size,), -1e9)
        base[source.archs] = source.sign * source.values().float()
        wiggle = torch.sin(torch.arange(NB201.size).float())
        self.members, self.calls = torch.stack([base, base + wiggle, base - wiggle]), []

    def __call__(self, support: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        self.calls.append((support.clone(), targets.clone(), candidates.clone()))
        return self.members.index_select(1, candidates)


def build(name: str, source: Task) -> Strategy:
    return make_strategy(name, source=source, scorer=TableScorer(source))


def run_fresh(task: Task, name: str, source: Task, budget: int, seed: int, n: int | None = None) -> TableOracle:
    oracle = TableOracle(task, budget, seed=seed)
    build(name, source).run(oracle, budget if n is None else n, torch.Generator().manual_seed(seed))
    return oracle


@pytest.mark.parametrize("name", NAMES)
def test_spends_exactly_the_budget_and_never_raises(name: str, cifar10: Task, cifar100: Task) -> None:
    oracle = run_fresh(cifar10, name, cifar100, budget=40, seed=0, n=1000)
    assert oracle.num_queries == 40
    build(name, cifar100).run(oracle, 5, torch.Generator().manual_seed(1))  # spent: a no-op, no BudgetExhausted
    assert oracle.num_queries == 40
    assert len(set(oracle.history()[0].tolist())) == 40


@pytest.mark.parametrize("name", NAMES)
def test_rounds_continue_the_history(name: str, cifar10: Task, cifar100: Task) -> None:
    oracle = TableOracle(cifar10, budget=None, seed=0)
    strategy, gen = build(name, cifar100), torch.Generator().manual_seed(3)
    strategy.run(oracle, 12, gen)
    first = oracle.history()[0].clone()
    strategy.run(oracle, 12, gen)
    assert oracle.num_queries == 24
    assert torch.equal(oracle.history()[0][:12], first)
    capped = TableOracle(cifar10, budget=20, seed=0)
    strategy.run(capped, 12, gen)
    strategy.run(capped, 12, gen)
    assert capped.num_queries == 20


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_history(name: str, cifar10: Task, cifar100: Task) -> None:
    a = run_fresh(cifar10, name, cifar100, budget=40, seed=5)
    b = run_fresh(cifar10, name, cifar100, budget=40, seed=5)
    assert torch.equal(a.history()[0], b.history()[0])


@pytest.mark.parametrize("name", ["random", "rea", "local", "reinforce"])
def test_different_seed_different_history(name: str, cifar10: Task, cifar100: Task) -> None:
    a = run_fresh(cifar10, name, cifar100, budget=30, seed=0)
    b = run_fresh(cifar10, name, cifar100, budget=30, seed=1)
    assert not torch.equal(a.history()[0], b.history()[0])


def test_thompson_meta_depends_on_the_seed(cifar10: Task, cifar100: Task) -> None:
    histories = []
    for seed in (0, 1):
        oracle = TableOracle(cifar10, 20, seed=seed)
        MetaSearch(TableScorer(cifar100), acquisition="thompson").run(oracle, 20, torch.Generator().manual_seed(seed))
        histories.append(oracle.history()[0])
    assert not torch.equal(*histories)


@pytest.mark.parametrize("name", NAMES)
def test_partial_task_queries_only_its_archs(name: str, partial: Task, cifar100: Task) -> None:
    oracle = run_fresh(partial, name, cifar100, budget=60, seed=2)
    assert oracle.num_queries == 60
    assert bool(partial.contains(oracle.history()[0]).all())


@pytest.mark.parametrize("name", NAMES)
def test_task_smaller_than_the_budget_is_exhausted_cleanly(name: str, cifar10: Task, cifar100: Task) -> None:
    archs = torch.tensor([5, 77, 1200, 4000, 9999, 15000, 15624])
    tiny = Task(name="test/tiny", direction="max", archs=archs, table=cifar10.lookup(archs))
    oracle = run_fresh(tiny, name, cifar100, budget=30, seed=0)
    assert sorted(oracle.history()[0].tolist()) == archs.tolist()


def test_direction_is_respected(partial: Task, cifar10: Task) -> None:
    """On a 'min' task ranked by its 'max' source, transfer and meta query the minimum first."""
    optimum = partial.best()[0]
    assert run_fresh(partial, "transfer", cifar10, budget=5, seed=0).history()[0][0] == optimum
    scorer, oracle = TableScorer(cifar10), TableOracle(partial, 5, seed=0)
    MetaSearch(scorer, beta=0.0).run(oracle, 5, torch.Generator().manual_seed(0))
    assert oracle.history()[0][0] == optimum
    _, targets, _ = scorer.calls[-1]
    assert torch.allclose(targets.double(), -oracle.history()[1][:-1], atol=1e-4)  # signed: higher is better


def test_meta_starts_from_the_prior_and_stops_at_budget(cifar10: Task, cifar100: Task) -> None:
    scorer, oracle = TableScorer(cifar100), TableOracle(cifar10, 10, seed=0)
    MetaSearch(scorer, batch=3, beta=0.0).run(oracle, 100, torch.Generator().manual_seed(0))
    assert oracle.num_queries == 10
    assert [len(c[0]) for c in scorer.calls] == [0, 3, 6, 9]
    assert len(scorer.calls[0][2]) == NB201.size
    top3 = set(torch.topk(cifar100.values(), 3).indices.tolist())  # the members' mean is the source table
    assert set(oracle.history()[0][:3].tolist()) == top3
    for support, _, cands in scorer.calls[1:]:
        assert not (torch.isin(cands, support)).any()


def test_meta_mutation_mode_scores_few_candidates(cifar10: Task, cifar100: Task) -> None:
    scorer, oracle = TableScorer(cifar100), TableOracle(cifar10, 25, seed=0)
    MetaSearch(scorer, batch=2, max_candidates=100).run(oracle, 25, torch.Generator().manual_seed(0))
    assert oracle.num_queries == 25
    assert all(1 <= len(c[2]) <= 100 for c in scorer.calls)
    support, _, cands = scorer.calls[-1]
    best = int(support[torch.argmax(scorer.calls[-1][1])])
    assert torch.isin(NB201.neighbours(best), cands).any()  # mutations of the best are candidates


@pytest.mark.parametrize(("schedule", "local_run", "globals_after"), [({}, 7, 2), ({"local_parents": 2, "global_every": 4}, 3, 5)])
def test_meta_large_space_schedule_scores_mutations_of_the_measured_best(cifar10: Task, cifar100: Task, schedule: dict,
                                                                         local_run: int, globals_after: int) -> None:
    """Above max_candidates: 5 random queries, global picks up to 10 and every ``global_every``-th
    after (defaults: 8th), and otherwise only the unqueried neighbours of the ``local_parents`` best
    measured architectures that have any (default: the best) are scored."""
    scorer, oracle = TableScorer(cifar100), TableOracle(cifar10, 30, seed=0)
    meta = MetaSearch(scorer, max_candidates=100, **schedule)
    meta.run(oracle, 30, torch.Generator().manual_seed(0))
    assert oracle.num_queries == 30 == len(scorer.calls)
    phases = [meta.phase(len(c[0])) for c in scorer.calls]
    assert phases[:11 + local_run] == ["random"] * 5 + ["global"] * 5 + ["local"] * local_run + ["global"]
    assert phases.count("global") == 5 + globals_after and phases.count("local") == 20 - globals_after
    for (support, targets, cands), phase in zip(scorer.calls, phases):
        assert not torch.isin(cands, support).any()
        if phase == "random":
            assert len(cands) == 1
        elif phase == "global":
            assert len(cands) == 100
        else:
            expected: set[int] = set()
            parents = 0
            for p in support[torch.argsort(targets, descending=True)].tolist():
                new = set(NB201.neighbours(p).tolist()) - set(support.tolist())
                if new:
                    expected |= new
                    parents += 1
                if parents == meta.local_parents:
                    break
            assert set(cands.tolist()) == expected
    top = set(torch.topk(cifar100.values(), 5).indices.tolist())  # the scorer's favourites overall
    local = [c for c, ph in zip(oracle.history()[0].tolist(), phases) if ph == "local"]
    assert not top & set(local)  # local picks follow the measurements, not the scorer's global favourites


@pytest.mark.parametrize("name", NAMES)
def test_target_values_come_only_through_oracle_query(name: str, cifar10: Task, cifar100: Task) -> None:
    guarded = GuardedTask.wrap(cifar10, only_from("_evaluate", "oracles/table.py"))  # values only as an oracle answers
    oracle = run_fresh(guarded, name, cifar100, budget=30, seed=0)
    assert oracle.num_queries == 30 and guarded.reads == 30


def test_search_beats_random_on_average(cifar10: Task, cifar100: Task) -> None:
    """Over 6 seeds at 100 queries, REA and local search find better archs than random search."""

    def mean_best(name: str) -> float:
        return sum(run_fresh(cifar10, name, cifar100, 100, s).best()[1] for s in range(6)) / 6

    rand = mean_best("random")
    assert mean_best("rea") > rand - 0.05
    assert mean_best("local") > rand


def test_user_errors_name_the_choices(cifar10: Task) -> None:
    with pytest.raises(UserError, match="random, rea, local, reinforce, transfer, meta"):
        make_strategy("bayesopt")
    with pytest.raises(UserError, match="--source"):
        make_strategy("transfer")
    with pytest.raises(UserError, match="--ckpt"):
        make_strategy("meta")
    with pytest.raises(UserError, match="ucb"):
        MetaSearch(TableScorer(cifar10), acquisition="greedy")
    with pytest.raises(UserError, match="local_parents >= 1"):
        MetaSearch(TableScorer(cifar10), local_parents=0)
    with pytest.raises(UserError, match="init_random"):
        MetaSearch(TableScorer(cifar10), global_every=-1)
    with pytest.raises(UserError, match="sample_size=11"):
        RegularizedEvolution(population=10, sample_size=11)
    with pytest.raises(UserError, match="momentum=1"):
        Reinforce(momentum=1.0)
    with pytest.raises(UserError, match="-1"):
        quota(TableOracle(cifar10, 5), -1)


GOLDEN = {  # the first 15 queries after a 3-query history, recorded with the code before the ask / tell rewrite
    "random": [10577, 9622, 10698, 2345, 9290, 1620, 10444, 14528, 6018, 9740, 13446, 12408, 9991, 8194, 10735],
    "rea": [10577, 9621, 10698, 2342, 9287, 1615, 10442, 1323, 10417, 10402, 10407, 1067, 12292, 2917, 10292],
    "local": [1251, 12501, 26, 2501, 9376, 51, 11, 626, 6251, 21, 3, 251, 16, 501, 126],
    "transfer": [11667, 11668, 11043, 11542, 11292, 11663, 11788, 11038, 11042, 11662, 11543, 11413, 9787, 11793, 8538],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_results_do_not_move(name: str, cifar10: Task, cifar100: Task) -> None:
    oracle = TableOracle(cifar100, budget=40, seed=0)
    oracle.query(cifar100.archs[:3])
    make_strategy(name, source=cifar10).run(oracle, 20, torch.Generator().manual_seed(0))
    assert oracle.history()[0].tolist()[3:18] == GOLDEN[name]

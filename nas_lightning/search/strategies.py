"""Search strategies that query an :class:`~nas_lightning.oracles.base.Oracle` (no Trainer).

Every strategy is stateless between calls: the history lives in the oracle, so ``run`` can be
called for several rounds on one oracle and each round continues from ``oracle.history()``.
Values are always compared as ``value * oracle.sign`` (higher is better) and candidates are
restricted to ``oracle.archs``; moves (neighbours, decisions) come from ``oracle.space``. A
strategy's moves live in its proposer (:meth:`Strategy.proposer`,
:mod:`~nas_lightning.search.proposers`): :meth:`Strategy.run` drives it one query at a time,
:func:`~nas_lightning.search.driver.run_parallel` with several trainings at once.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import torch

from nas_lightning.errors import UserError
from nas_lightning.search.state import SearchState, Proposer, quota
from nas_lightning.search.proposers import Evolution, FixedOrder, Local, Policy
from nas_lightning.oracles import Oracle
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)
__all__ = ["LocalSearch", "RandomSearch", "RegularizedEvolution", "Reinforce", "Strategy", "TransferSearch"]


class Strategy(ABC):
    """A search strategy: spends queries of an oracle, continuing from its history."""

    name: str = "strategy"

    @abstractmethod
    def proposer(self, oracle: Oracle, k: int, generator: torch.Generator) -> Proposer:
        """This strategy's proposer for ``k`` new queries of ``oracle``."""

    def run(self, oracle: Oracle, n_queries: int, generator: torch.Generator) -> None:
        """Spend up to ``n_queries`` more distinct queries (never past ``oracle.remaining``), one at a time.

        Args:
            oracle: the target task's oracle; its history is the starting point.
            n_queries: how many new architectures to query at most.
            generator: the only source of randomness (same state, same queries).

        Raises:
            RuntimeError: if the proposer waits with nothing pending (a bug in it).
        """
        k = quota(oracle, n_queries)
        proposer = self.proposer(oracle, k, generator)
        for _ in range(k):
            arch = proposer.propose()
            if arch is None:
                raise RuntimeError(f"strategy {self.name!r} proposed nothing with nothing pending")
            proposer.pool.seen[int(arch)] = True
            proposer.tell(int(arch), float(oracle.query(int(arch))[0]) * oracle.sign)


class RandomSearch(Strategy):
    """Uniform sampling without repetition."""

    name = "random"

    def proposer(self, oracle: Oracle, k: int, generator: torch.Generator) -> Proposer:
        cands = SearchState(oracle).unseen()
        return FixedOrder(cands[torch.randperm(len(cands), generator=generator)[:k]].tolist(), oracle, k, generator)


class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution: tournament, mutate the winner, the oldest dies.

    The population is the last ``population`` queried architectures of the history, so aging
    falls out of the query order. Until the history holds a population, archs are drawn at random.

    Args:
        population: population size P.
        sample_size: tournament size S (``<= population``).
        max_tries: tournaments tried per child (a parent whose mutations are all queried already
            or outside the task fails) before falling back to a random unseen arch.

    Raises:
        UserError: for sizes below one or a tournament larger than the population.
    """

    name = "rea"

    def __init__(self, population: int = 10, sample_size: int = 3, max_tries: int = 20) -> None:
        if population < 1 or not 1 <= sample_size <= population or max_tries < 1:
            raise UserError(f"rea needs population >= sample_size >= 1 and max_tries >= 1, got "
                            f"population={population}, sample_size={sample_size}, max_tries={max_tries}")
        self.population, self.sample_size, self.max_tries = population, sample_size, max_tries

    def proposer(self, oracle: Oracle, k: int, generator: torch.Generator) -> Proposer:
        return Evolution(oracle, k, generator, self.population, self.sample_size, self.max_tries)


class LocalSearch(Strategy):
    """Best-improvement hill climbing over one-edge neighbourhoods, with random restarts.

    A round starts at the best architecture queried so far (or a random one), evaluates its
    neighbourhood in random order, moves to the best improving neighbour, and restarts at a random
    unseen architecture at a local optimum.
    """

    name = "local"

    def proposer(self, oracle: Oracle, k: int, generator: torch.Generator) -> Proposer:
        return Local(oracle, k, generator)


class Reinforce(Strategy):
    """REINFORCE over independent per-edge op distributions, with a moving-average baseline.

    The policy (one softmax per decision of the space) is first replayed on the history (so rounds continue), then samples architectures;
    a repeated architecture costs no query but still updates the policy. After ``max_tries``
    samples without a new architecture, a random unseen one is queried instead. The gradient of
    the log-probability is analytic (``onehot - softmax``) and Adam is written out: the policy
    is a ``[6, 5]`` table, far too small to be worth autograd.

    Args:
        lr: Adam learning rate of the ``[6, 5]`` policy logits.
        momentum: momentum of the exponential moving-average reward baseline.
        max_tries: samples allowed per new query before the random fallback.

    Raises:
        UserError: for a non-positive lr, a momentum outside [0, 1) or max_tries below one.
    """

    name = "reinforce"
    betas: tuple[float, float] = (0.9, 0.999)

    def __init__(self, lr: float = 0.05, momentum: float = 0.9, max_tries: int = 50) -> None:
        if lr <= 0 or not 0 <= momentum < 1 or max_tries < 1:
            raise UserError(f"reinforce needs lr > 0, 0 <= momentum < 1, max_tries >= 1; got "
                            f"lr={lr}, momentum={momentum}, max_tries={max_tries}")
        self.lr, self.momentum, self.max_tries = lr, momentum, max_tries

    def proposer(self, oracle: Oracle, k: int, generator: torch.Generator) -> Proposer:
        return Policy(oracle, k, generator, self.lr, self.betas, self.momentum, self.max_tries)


class TransferSearch(Strategy):
    """Query ``oracle.archs`` in the order of a source table (best first), skipping seen ones.

    Architectures the source lacks come last; ties are broken at random.

    Args:
        source: a source (meta-train) task whose values rank the candidates.
    """

    name = "transfer"

    def __init__(self, source: Task) -> None:
        self.source = source

    def proposer(self, oracle: Oracle, k: int, generator: torch.Generator) -> Proposer:
        pool = SearchState(oracle)
        archs = oracle.archs[torch.randperm(len(oracle.archs), generator=generator)]
        archs = archs[pool.fresh(archs)]
        score = torch.full((len(archs),), -float("inf"), dtype=torch.float64)
        known = self.source.contains(archs)
        score[known] = torch.nan_to_num(self.source.sign * self.source.lookup(archs[known]).double(), nan=-float("inf"))
        order = torch.argsort(score, descending=True, stable=True)
        return FixedOrder(archs[order[:k]].tolist(), oracle, k, generator)

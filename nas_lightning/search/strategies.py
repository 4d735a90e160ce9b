"""Search strategies that query an :class:`~nas_lightning.tasks.oracle.Oracle` (no Trainer).

Every strategy is stateless between calls: the history lives in the oracle, so ``run`` can be
called for several rounds on one oracle and each round continues from ``oracle.history()``.
Values are always compared as ``value * oracle.sign`` (higher is better) and candidates are
restricted to ``oracle.archs``; moves (neighbours, decisions) come from ``oracle.space``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import torch

from nas_lightning.errors import UserError
from nas_lightning.spaces import SearchSpace
from nas_lightning.tasks.oracle import Oracle
from nas_lightning.tasks.task import Task

log = logging.getLogger(__name__)


def quota(oracle: Oracle, n_queries: int) -> int:
    """How many new queries a round may spend: ``n_queries`` capped by the budget and unseen archs.

    Raises:
        UserError: for a negative ``n_queries``.
    """
    if n_queries < 0:
        raise UserError(f"n_queries must be >= 0, got {n_queries}")
    left = n_queries if oracle.remaining is None else min(n_queries, oracle.remaining)
    # the oracle only ever records architectures the task holds, so the rest are unseen
    return max(0, min(left, len(oracle.archs) - oracle.num_queries))


class Pool:
    """Which architectures a search may still query: held by the task and not yet seen.

    Args:
        oracle: the oracle whose ``archs`` and history define the pool.
    """

    def __init__(self, oracle: Oracle) -> None:
        self.allowed = torch.zeros(oracle.space.size, dtype=torch.bool)
        self.allowed[oracle.archs] = True
        self.seen = torch.zeros(oracle.space.size, dtype=torch.bool)
        idx, values = oracle.history()
        self.seen[idx] = True
        self.signed: dict[int, float] = dict(zip(idx.tolist(), (values * oracle.sign).tolist()))
        self._oracle = oracle
        self.space = oracle.space

    def fresh(self, indices: torch.Tensor) -> torch.Tensor:
        """Boolean mask: which of ``indices`` are held by the task and unseen."""
        flat = indices.reshape(-1).long()
        return (self.allowed.index_select(0, flat) & ~self.seen.index_select(0, flat)).reshape(indices.shape)

    def unseen(self) -> torch.Tensor:
        """All queryable architectures, ascending."""
        return torch.nonzero(self.allowed & ~self.seen).flatten()

    def random_unseen(self, generator: torch.Generator) -> int:
        """One uniformly drawn queryable architecture (callers ensure one exists)."""
        cands = self.unseen()
        return int(cands[torch.randint(len(cands), (1,), generator=generator)])

    def ask(self, index: int) -> float:
        """Query one architecture; returns its signed value (higher is better)."""
        value = float(self._oracle.query(int(index))[0]) * self._oracle.sign
        self.seen[int(index)] = True
        self.signed[int(index)] = value
        return value


class Strategy(ABC):
    """A search strategy: spends queries of an oracle, continuing from its history."""

    name: str = "strategy"

    @abstractmethod
    def run(self, oracle: Oracle, n_queries: int, generator: torch.Generator) -> None:
        """Spend up to ``n_queries`` more distinct queries (never past ``oracle.remaining``).

        Args:
            oracle: the target task's oracle; its history is the starting point.
            n_queries: how many new architectures to query at most.
            generator: the only source of randomness (same state, same queries).
        """


class RandomSearch(Strategy):
    """Uniform sampling without repetition."""

    name = "random"

    def run(self, oracle: Oracle, n_queries: int, generator: torch.Generator) -> None:
        pool, k = Pool(oracle), quota(oracle, n_queries)
        cands = pool.unseen()
        oracle.query(cands[torch.randperm(len(cands), generator=generator)[:k]])


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

    def run(self, oracle: Oracle, n_queries: int, generator: torch.Generator) -> None:
        pool, k = Pool(oracle), quota(oracle, n_queries)
        archs = oracle.history()[0].tolist()
        for _ in range(k):
            if len(archs) < self.population:
                child = pool.random_unseen(generator)
            else:
                child = self._child(archs[-self.population:], pool, generator)
            pool.ask(child)
            archs.append(child)

    def _child(self, population: list[int], pool: Pool, generator: torch.Generator) -> int:
        for _ in range(self.max_tries):
            picks = torch.randperm(len(population), generator=generator)[: self.sample_size].tolist()
            parent = max((population[i] for i in picks), key=lambda a: pool.signed[a])
            # a uniform mutation redrawn until it is new == a uniform draw among the new neighbours
            children = pool.space.neighbours(parent)
            children = children[pool.fresh(children)]
            if len(children):
                return int(children[torch.randint(len(children), (1,), generator=generator)])
        return pool.random_unseen(generator)


class LocalSearch(Strategy):
    """Best-improvement hill climbing over one-edge neighbourhoods, with random restarts.

    A round starts at the best architecture queried so far (or a random one), evaluates its
    neighbourhood in random order, moves to the best improving neighbour, and restarts at a random
    unseen architecture at a local optimum.
    """

    name = "local"

    def run(self, oracle: Oracle, n_queries: int, generator: torch.Generator) -> None:
        pool, k = Pool(oracle), quota(oracle, n_queries)
        stop = oracle.num_queries + k
        best = oracle.best()
        current: int | None = None if best is None else best[0]
        while oracle.num_queries < stop:
            if current is None:
                current = pool.random_unseen(generator)
                pool.ask(current)
                continue
            nbrs = oracle.space.neighbours(current)
            nbrs = nbrs[pool.allowed[nbrs]]
            nbrs = nbrs[torch.randperm(len(nbrs), generator=generator)].tolist()
            move, move_value = None, pool.signed[current]
            for nb in nbrs:
                if nb not in pool.signed:
                    if oracle.num_queries >= stop:
                        return
                    pool.ask(nb)
                if pool.signed[nb] > move_value:
                    move, move_value = nb, pool.signed[nb]
            current = move  # None at a local optimum: restart


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

    def run(self, oracle: Oracle, n_queries: int, generator: torch.Generator) -> None:
        pool, k = Pool(oracle), quota(oracle, n_queries)
        stop = oracle.num_queries + k
        policy = _AdamPolicy(oracle.space, self.lr, self.betas, self.momentum)
        for arch in oracle.history()[0].tolist():
            policy.update(arch, pool.signed[arch])
        tries = 0
        while oracle.num_queries < stop:
            choices = torch.multinomial(policy.probs(), 1, generator=generator).flatten()
            arch = int(oracle.space.from_choices(choices))  # -1: not an architecture of the space
            if arch in pool.signed:
                policy.update(arch, pool.signed[arch])
                tries += 1
            elif arch >= 0 and pool.allowed[arch]:
                policy.update(arch, pool.ask(arch))
                tries = 0
                continue
            else:
                tries += 1
            if tries >= self.max_tries:
                arch = pool.random_unseen(generator)
                policy.update(arch, pool.ask(arch))
                tries = 0


class _AdamPolicy:
    """Per-decision softmax policy trained by REINFORCE with hand-written Adam (decisions with
    fewer values than the widest have their missing values' logits at -inf)."""

    def __init__(self, space: SearchSpace, lr: float, betas: tuple[float, float], momentum: float) -> None:
        self.space, width = space, max(space.decisions)
        self.logits = torch.zeros(len(space.decisions), width, dtype=torch.float64)
        for d, n in enumerate(space.decisions):
            self.logits[d, n:] = -float("inf")
        self.m, self.v = torch.zeros_like(self.logits), torch.zeros_like(self.logits)
        self.lr, self.betas, self.momentum = lr, betas, momentum
        self.steps, self.baseline = 0, None

    def probs(self) -> torch.Tensor:
        """Value probabilities per decision, ``[decisions, widest]`` (NB201: ops per edge, ``[6, 5]``)."""
        e = (self.logits - self.logits.amax(-1, keepdim=True)).exp()
        return e / e.sum(-1, keepdim=True)

    def update(self, arch: int, reward: float) -> None:
        """One ascent step on ``(reward - baseline) * log p(arch)``, then move the baseline."""
        self.baseline = reward if self.baseline is None else (
            self.momentum * self.baseline + (1 - self.momentum) * reward)
        onehot = torch.nn.functional.one_hot(self.space.choices(arch), self.logits.shape[1]).double()
        grad = -(reward - self.baseline) * (onehot - self.probs())  # of the loss -adv * log p
        b1, b2 = self.betas
        self.steps += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        m_hat, v_hat = self.m / (1 - b1**self.steps), self.v / (1 - b2**self.steps)
        self.logits = self.logits - self.lr * m_hat / (v_hat.sqrt() + 1e-8)


class TransferSearch(Strategy):
    """Query ``oracle.archs`` in the order of a source table (best first), skipping seen ones.

    Architectures the source lacks come last; ties are broken at random.

    Args:
        source: a source (meta-train) task whose values rank the candidates.
    """

    name = "transfer"

    def __init__(self, source: Task) -> None:
        self.source = source

    def run(self, oracle: Oracle, n_queries: int, generator: torch.Generator) -> None:
        pool, k = Pool(oracle), quota(oracle, n_queries)
        archs = oracle.archs[torch.randperm(len(oracle.archs), generator=generator)]
        archs = archs[pool.fresh(archs)]
        score = torch.full((len(archs),), -float("inf"), dtype=torch.float64)
        known = self.source.contains(archs)
        score[known] = torch.nan_to_num(self.source.sign * self.source.lookup(archs[known]).double(), nan=-float("inf"))
        order = torch.argsort(score, descending=True, stable=True)
        oracle.query(archs[order[:k]])

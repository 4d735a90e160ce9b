"""How each strategy proposes while results are pending: its asynchronous (ask / tell) form.

A :class:`Proposer` is made for one run of a strategy on an oracle. ``propose()`` returns the
next architecture to train given what has finished (``oracle.history()``, in proposal order)
and what is running (marked seen in the pool: never proposed twice), or ``None`` when the
strategy's next move needs a pending result; ``tell(arch, signed_value)`` hands it each result,
in proposal order. With nothing pending at any proposal (one worker) every form makes exactly
the queries of its strategy's sequential :meth:`~nas_lightning.search.strategies.Strategy.run`:

* ``random``, ``transfer``: the same fixed order (they never look at values);
* ``rea``: asynchronous aging evolution (Real et al.): tournaments among the last ``population``
  *finished* children; random children until that many have finished;
* ``local``: a neighbourhood is proposed in full; the move waits for all of its values;
* ``reinforce``: the policy learns from results as they arrive; a pending sample counts as a try;
* ``meta``: the scorer conditions on what has finished and scores only what is neither
  finished nor running.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from nas_lightning.search.meta import MetaSearch
from nas_lightning.search.strategies import (
    LocalSearch,
    Pool,
    RandomSearch,
    RegularizedEvolution,
    Reinforce,
    Strategy,
    TransferSearch,
    _AdamPolicy,
)
from nas_lightning.tasks.oracle import Oracle


class Proposer(Protocol):
    """One run of a strategy in ask / tell form."""

    pool: Pool

    def propose(self) -> int | None:
        """The next architecture to train, or ``None``: wait for the oldest pending result."""
        ...

    def tell(self, arch: int, value: float) -> None:
        """The signed value (higher is better) of a proposed architecture, in proposal order."""
        ...


class _Base:
    def __init__(self, oracle: Oracle, k: int, generator: torch.Generator) -> None:
        self.oracle, self.k, self.generator, self.pool = oracle, k, generator, Pool(oracle)

    def tell(self, arch: int, value: float) -> None:
        self.pool.signed[int(arch)] = float(value)


class _Fixed(_Base):
    """A precomputed order (random, transfer)."""

    def __init__(self, order: list[int], oracle: Oracle, k: int, generator: torch.Generator) -> None:
        super().__init__(oracle, k, generator)
        self.order = list(order)

    def propose(self) -> int | None:
        return self.order.pop(0) if self.order else None


def _random(strategy: RandomSearch, oracle: Oracle, k: int, generator: torch.Generator) -> _Fixed:
    cands = Pool(oracle).unseen()
    return _Fixed(cands[torch.randperm(len(cands), generator=generator)[:k]].tolist(), oracle, k, generator)


def _transfer(strategy: TransferSearch, oracle: Oracle, k: int, generator: torch.Generator) -> _Fixed:
    pool = Pool(oracle)
    archs = oracle.archs[torch.randperm(len(oracle.archs), generator=generator)]
    archs = archs[pool.fresh(archs)]
    score = torch.full((len(archs),), -float("inf"), dtype=torch.float64)
    source = strategy.source
    known = source.contains(archs)
    score[known] = torch.nan_to_num(source.sign * source.lookup(archs[known]).double(), nan=-float("inf"))
    return _Fixed(archs[torch.argsort(score, descending=True, stable=True)[:k]].tolist(), oracle, k, generator)


class _Evolution(_Base):
    def __init__(self, strategy: RegularizedEvolution, oracle: Oracle, k: int, generator: torch.Generator) -> None:
        super().__init__(oracle, k, generator)
        self.strategy, self.finished = strategy, oracle.history()[0].tolist()

    def propose(self) -> int | None:
        if len(self.finished) < self.strategy.population:
            return self.pool.random_unseen(self.generator)
        return self.strategy._child(self.finished[-self.strategy.population:], self.pool, self.generator)

    def tell(self, arch: int, value: float) -> None:
        super().tell(arch, value)
        self.finished.append(int(arch))


class _Local(_Base):
    def __init__(self, strategy: LocalSearch, oracle: Oracle, k: int, generator: torch.Generator) -> None:
        super().__init__(oracle, k, generator)
        best = oracle.best()
        self.current: int | None = None if best is None else best[0]
        self.nbrs: list[int] | None = None  # the current neighbourhood, in evaluation order
        self.next = 0

    def propose(self) -> int | None:
        while True:
            if self.current is None:
                self.current = self.pool.random_unseen(self.generator)
                return self.current
            if self.nbrs is None:
                nbrs = self.oracle.space.neighbours(self.current)
                nbrs = nbrs[self.pool.allowed[nbrs]]
                self.nbrs, self.next = nbrs[torch.randperm(len(nbrs), generator=self.generator)].tolist(), 0
            while self.next < len(self.nbrs):
                nb = self.nbrs[self.next]
                self.next += 1
                if not bool(self.pool.seen[nb]):
                    return nb
            if any(a not in self.pool.signed for a in [self.current, *self.nbrs]):
                return None  # the move needs the whole neighbourhood's values
            move, move_value = None, self.pool.signed[self.current]
            for nb in self.nbrs:
                if self.pool.signed[nb] > move_value:
                    move, move_value = nb, self.pool.signed[nb]
            self.current, self.nbrs = move, None  # None at a local optimum: restart


class _Reinforce(_Base):
    def __init__(self, strategy: Reinforce, oracle: Oracle, k: int, generator: torch.Generator) -> None:
        super().__init__(oracle, k, generator)
        self.strategy = strategy
        self.policy = _AdamPolicy(oracle.space, strategy.lr, strategy.betas, strategy.momentum)
        for arch in oracle.history()[0].tolist():
            self.policy.update(arch, self.pool.signed[arch])
        self.tries = 0

    def propose(self) -> int | None:
        space = self.oracle.space
        while True:
            choices = torch.multinomial(self.policy.probs(), 1, generator=self.generator).flatten()
            arch = int(space.from_choices(choices))  # -1: not an architecture of the space
            if arch in self.pool.signed:
                self.policy.update(arch, self.pool.signed[arch])
                self.tries += 1
            elif arch >= 0 and bool(self.pool.allowed[arch]) and not bool(self.pool.seen[arch]):
                self.tries = 0
                return arch
            else:  # outside the task, or running: no value to learn from yet
                self.tries += 1
            if self.tries >= self.strategy.max_tries:
                self.tries = 0
                return self.pool.random_unseen(self.generator)

    def tell(self, arch: int, value: float) -> None:
        super().tell(arch, value)
        self.policy.update(int(arch), float(value))


class _Meta(_Base):
    def __init__(self, strategy: MetaSearch, oracle: Oracle, k: int, generator: torch.Generator) -> None:
        super().__init__(oracle, k, generator)
        self.strategy, self.proposed, self.queue = strategy, 0, []

    def propose(self) -> int | None:
        if not self.queue:
            support_archs, values = self.oracle.history()  # what has finished, in proposal order
            targets = (values * self.oracle.sign).float()
            cands = self.strategy.candidates(self.oracle, self.pool, self.generator)  # not finished, not running
            with torch.no_grad():
                scores = self.strategy.scorer(support_archs, targets, cands, self.generator)
            scores = torch.nan_to_num(scores.reshape(-1, len(cands)).float(), nan=-float("inf"))
            n = min(self.strategy.batch, self.k - self.proposed)
            self.queue = self.strategy.acquire(scores, cands, n, self.generator).tolist()
        self.proposed += 1
        return self.queue.pop(0)


PROPOSERS: dict[type[Strategy], Callable[..., Proposer]] = {
    RandomSearch: _random, TransferSearch: _transfer, RegularizedEvolution: _Evolution,
    LocalSearch: _Local, Reinforce: _Reinforce, MetaSearch: _Meta,
}


def proposer(strategy: Strategy, oracle: Oracle, k: int, generator: torch.Generator) -> Proposer:
    """The asynchronous form of ``strategy`` for ``k`` new queries of ``oracle``.

    Raises:
        TypeError: for a strategy without an asynchronous form.
    """
    for cls in type(strategy).__mro__:
        if cls in PROPOSERS:
            return PROPOSERS[cls](strategy, oracle, k, generator)
    raise TypeError(f"strategy {strategy.name!r} has no asynchronous form")

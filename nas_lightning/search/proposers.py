"""How each strategy proposes: its proposer, the one implementation of its moves.

A :class:`~nas_lightning.search.state.Proposer` is made for one run of a strategy on an oracle
(``Strategy.proposer``). ``propose()`` returns the next architecture to train given what has
finished (``oracle.history()``, in proposal order)
and what is running (marked seen in the pool: never proposed twice), or ``None`` when the
strategy's next move needs a pending result; ``tell(arch, signed_value)`` hands it each result,
in proposal order. :meth:`~nas_lightning.search.strategies.Strategy.run` drives a proposer one query
at a time (nothing pending); :func:`~nas_lightning.search.driver.run_parallel` with several
workers keeps some pending:

* ``random``, ``transfer``: the same fixed order (they never look at values);
* ``rea``: asynchronous aging evolution (Real et al.): tournaments among the last ``population``
  *finished* children; random children until that many have finished;
* ``local``: a neighbourhood is proposed in full; the move waits for all of its values;
* ``reinforce``: the policy learns from results as they arrive; a pending sample counts as a try;
* ``meta`` (its proposer lives beside it in :mod:`~nas_lightning.search.meta`): the scorer
  conditions on what has finished and scores only what is neither finished nor running.
"""

from __future__ import annotations

import torch

from nas_lightning.search.state import SearchState
from nas_lightning.spaces import SearchSpace
from nas_lightning.oracles import Oracle


class _Base:
    def __init__(self, oracle: Oracle, k: int, generator: torch.Generator) -> None:
        self.oracle, self.k, self.generator, self.pool = oracle, k, generator, SearchState(oracle)

    def tell(self, arch: int, value: float) -> None:
        self.pool.signed[int(arch)] = float(value)


class FixedOrder(_Base):
    """A precomputed order (random, transfer)."""

    def __init__(self, order: list[int], oracle: Oracle, k: int, generator: torch.Generator) -> None:
        super().__init__(oracle, k, generator)
        self.order = list(order)

    def propose(self) -> int | None:
        return self.order.pop(0) if self.order else None


class Evolution(_Base):
    """Aging evolution: tournaments among the last ``population`` finished children."""

    def __init__(self, oracle: Oracle, k: int, generator: torch.Generator, population: int, sample_size: int,
                 max_tries: int) -> None:
        super().__init__(oracle, k, generator)
        self.population, self.sample_size, self.max_tries = population, sample_size, max_tries
        self.finished = oracle.history()[0].tolist()

    def propose(self) -> int | None:
        if len(self.finished) < self.population:
            return self.pool.random_unseen(self.generator)
        return self._child(self.finished[-self.population:])

    def tell(self, arch: int, value: float) -> None:
        super().tell(arch, value)
        self.finished.append(int(arch))

    def _child(self, population: list[int]) -> int:
        pool, generator = self.pool, self.generator
        for _ in range(self.max_tries):
            picks = torch.randperm(len(population), generator=generator)[: self.sample_size].tolist()
            parent = max((population[i] for i in picks), key=lambda a: pool.signed[a])
            # a uniform mutation redrawn until it is new == a uniform draw among the new neighbours
            children = pool.space.neighbours(parent)
            children = children[pool.fresh(children)]
            if len(children):
                return int(children[torch.randint(len(children), (1,), generator=generator)])
        return pool.random_unseen(generator)


class Local(_Base):
    """Best-improvement hill climbing; a move waits for its whole neighbourhood's values."""

    def __init__(self, oracle: Oracle, k: int, generator: torch.Generator) -> None:
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


class Policy(_Base):
    """REINFORCE: the policy learns from results as they arrive; a pending sample counts as a try."""

    def __init__(self, oracle: Oracle, k: int, generator: torch.Generator, lr: float, betas: tuple[float, float],
                 momentum: float, max_tries: int) -> None:
        super().__init__(oracle, k, generator)
        self.max_tries = max_tries
        self.policy = AdamPolicy(oracle.space, lr, betas, momentum)
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
            if self.tries >= self.max_tries:
                self.tries = 0
                return self.pool.random_unseen(self.generator)

    def tell(self, arch: int, value: float) -> None:
        super().tell(arch, value)
        self.policy.update(int(arch), float(value))


class AdamPolicy:
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

"""What a search may still query, and the proposer protocol every strategy proposes through.

:class:`SearchState` tracks the task's architectures and which are seen (answered or running);
:func:`quota` caps a round by the budget; a :class:`Proposer` is one run of a strategy (see
:mod:`~nas_lightning.search.proposers`).
"""

from __future__ import annotations

from typing import Protocol

import torch

from nas_lightning.errors import UserError
from nas_lightning.oracles import Oracle


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


class SearchState:
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


class Proposer(Protocol):
    """One run of a strategy as a proposer: ``propose`` the next architecture, ``tell`` its value."""

    pool: SearchState

    def propose(self) -> int | None:
        """The next architecture to query, or ``None``: wait for the oldest pending result."""
        ...

    def tell(self, arch: int, value: float) -> None:
        """The signed value (higher is better) of a proposed architecture, in proposal order."""
        ...

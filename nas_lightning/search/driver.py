"""Run a strategy with ``workers`` trainings at once, deterministically (a fixed lag).

Proposal ``i`` is made once the results of proposals ``0 .. i - workers`` are known: while
``workers`` trainings are running the driver waits for the *oldest* one (not the first to
finish), hands results to the strategy in proposal order, and never proposes a running
architecture. What a strategy sees therefore depends on ``workers`` and the seed, never on
timing: two runs with the same ``workers`` are identical, and ``workers=1`` is exactly the
sequential :meth:`Strategy.run` (the same proposer, driven one query at a time). Non-adaptive
strategies (random, transfer) and local search
(which waits for a whole neighbourhood before it moves) make the same queries for every
``workers``; adaptive ones (rea, reinforce, meta) differ across ``workers`` by the lag only.

Every oracle is driven the same way: ``submit(arch)`` charges an architecture and starts it,
``collect(arch)`` waits for its value (a table oracle answers at submission; the training oracle
on Ray trains several at once).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable

import torch

from nas_lightning.search.state import quota
from nas_lightning.search.strategies import Strategy
from nas_lightning.oracles import Oracle

log = logging.getLogger(__name__)


def run_parallel(strategy: Strategy, oracle: Oracle, n_queries: int, generator: torch.Generator, workers: int,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
    """Spend up to ``n_queries`` more distinct queries of ``oracle`` with at most ``workers`` pending.

    Args:
        strategy: the strategy; its proposer (:mod:`~nas_lightning.search.proposers`) proposes.
        oracle: the target's oracle; its history is the starting point and receives the results in
            proposal order.
        n_queries: how many new architectures to query at most (capped by the budget).
        generator: the only source of randomness.
        workers: trainings running at once (>= 1).
        on_progress: called with (running, finished this call) after each submission and each result.

    Raises:
        ValueError: for ``workers`` below one.
        RuntimeError: if a strategy waits with nothing pending (a bug in its proposer).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    k = quota(oracle, n_queries)
    proposer = strategy.proposer(oracle, k, generator)
    pending: deque[int] = deque()
    submitted = 0
    try:
        while submitted < k or pending:
            if submitted < k and len(pending) < workers:
                arch = proposer.propose()
                if arch is not None:
                    arch = int(arch)
                    proposer.pool.seen[arch] = True  # running: never proposed again
                    oracle.submit(arch)
                    pending.append(arch)
                    submitted += 1
                    if on_progress is not None:
                        on_progress(len(pending), submitted - len(pending))
                    continue
                if not pending:
                    raise RuntimeError(f"strategy {strategy.name!r} proposed nothing with nothing pending")
            arch = pending.popleft()  # the oldest: results reach the strategy in proposal order
            proposer.tell(arch, oracle.collect(arch) * oracle.sign)
            if on_progress is not None:
                on_progress(len(pending), submitted - len(pending))
    finally:
        if pending:  # an error or interrupt: nothing stays charged half-way
            oracle.cancel_pending()
    log.debug("%s: %d queries with %d workers", strategy.name, submitted, workers)

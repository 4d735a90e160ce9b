"""Run a strategy with ``workers`` trainings at once, deterministically (a fixed lag).

Proposal ``i`` is made once the results of proposals ``0 .. i - workers`` are known: while
``workers`` trainings are running the driver waits for the *oldest* one (not the first to
finish), hands results to the strategy in proposal order, and never proposes a running
architecture. What a strategy sees therefore depends on ``workers`` and the seed, never on
timing: two runs with the same ``workers`` are identical, and ``workers=1`` is exactly the
sequential :meth:`Strategy.run` (the same form, driven one query at a time). Non-adaptive
strategies (random, transfer) and local search
(which waits for a whole neighbourhood before it moves) make the same queries for every
``workers``; adaptive ones (rea, reinforce, meta) differ across ``workers`` by the lag only.

An oracle with ``submit(arch)`` / ``collect(arch)`` (the training oracle on a Ray cluster)
charges an architecture when it is submitted and runs it at once; any other oracle is queried
when a result is collected (the same answers, one at a time).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Callable

import torch

from nas_lightning.search.pool import quota
from nas_lightning.search.strategies import Strategy
from nas_lightning.tasks.oracle import Oracle

log = logging.getLogger(__name__)


def run_parallel(strategy: Strategy, oracle: Oracle, n_queries: int, generator: torch.Generator, workers: int,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
    """Spend up to ``n_queries`` more distinct queries of ``oracle`` with at most ``workers`` pending.

    Args:
        strategy: the strategy; its asynchronous form (:mod:`~nas_lightning.search.proposers`) proposes.
        oracle: the target's oracle; its history is the starting point and receives the results in
            proposal order.
        n_queries: how many new architectures to query at most (capped by the budget).
        generator: the only source of randomness.
        workers: trainings running at once (>= 1).
        on_progress: called with (running, finished this call) after each submission and each result.

    Raises:
        ValueError: for ``workers`` below one.
        RuntimeError: if a strategy waits with nothing pending (a bug in its asynchronous form).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    k = quota(oracle, n_queries)
    form = strategy.proposer(oracle, k, generator)
    submit = getattr(oracle, "submit", None)
    collect = getattr(oracle, "collect", None)
    pending: deque[int] = deque()
    submitted = 0
    try:
        while submitted < k or pending:
            if submitted < k and len(pending) < workers:
                arch = form.propose()
                if arch is not None:
                    arch = int(arch)
                    form.pool.seen[arch] = True  # running: never proposed again
                    if submit is not None:
                        submit(arch)
                    pending.append(arch)
                    submitted += 1
                    if on_progress is not None:
                        on_progress(len(pending), submitted - len(pending))
                    continue
                if not pending:
                    raise RuntimeError(f"strategy {strategy.name!r} proposed nothing with nothing pending")
            arch = pending.popleft()  # the oldest: results reach the strategy in proposal order
            value = collect(arch) if collect is not None else float(oracle.query(arch)[0])
            form.tell(arch, float(value) * oracle.sign)
            if on_progress is not None:
                on_progress(len(pending), submitted - len(pending))
    finally:
        cancel = getattr(oracle, "cancel_pending", None)
        if cancel is not None and pending:  # an error or interrupt: nothing stays charged half-way
            cancel()
    log.debug("%s: %d queries with %d workers", strategy.name, submitted, workers)

"""Predictor-guided search: a (meta-learned) scorer ranks unqueried architectures, few-shot.

The scorer sees only what the oracle has answered so far (the support set) and proposes the
next architectures through an acquisition that balances its ensemble's mean and spread.

On a space too large to score whole (NAS-Bench-Graph) the search follows a schedule
(:meth:`MetaSearch.phase`): a few random architectures first (a support the prior did not
choose), a few picks among the whole space, then predictor-guided evolution: the scorer ranks
only the unqueried mutations of the best measured architecture (as NPENAS / BRP-NAS do), with a
global pick every ``global_every`` queries. The defaults (one parent, a global pick every 8th) were
chosen on NAS-Bench-Graph's leave-one-dataset-out benchmark among 14 schedules: the same mean
regret as two parents and every 4th, a smaller worst case (BENCHMARKS.md notes).
"""

from __future__ import annotations

from dataclasses import dataclass

import logging
import math
from typing import Protocol

import torch

from nas_lightning.errors import UserError
from nas_lightning.search.state import SearchState, Proposer
from nas_lightning.search.strategies import Strategy
from nas_lightning.oracles import Oracle

log = logging.getLogger(__name__)

ACQUISITIONS: tuple[str, ...] = ("ucb", "thompson")
HEADS: tuple[str, ...] = ("maml", "gp")  # the predictor's head: MAML's adapted output, or a GP on its features
GP_ACQUISITIONS: tuple[str, ...] = ("ucb", "ei")  # the GP head's: upper confidence bound, expected improvement


class Scorer(Protocol):
    """Scores candidate architectures given a support set of queried ones."""

    def __call__(self, support_archs: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        """Score candidates.

        Args:
            support_archs: queried architecture indices ``[k]`` (long; ``k`` may be 0).
            targets: their values times ``oracle.sign`` ``[k]`` (float; higher is better).
            candidates: architecture indices to score ``[C]`` (long).
            generator: the search's generator, for any randomness of the scorer (ensembles).

        Returns:
            Scores ``[M, C]`` from ``M`` ensemble members, higher is better.
        """
        ...


@dataclass(frozen=True)
class MetaOptions:
    """How ``meta`` (and ``pretrain``) search with the predictor.

    Args:
        batch: architectures queried per scoring step.
        members: bootstrap members of the scorer (their spread drives exploration; 1: none).
        beta: exploration weight (score = mean + beta * spread: the members' spread, or the
            posterior standard deviation with ``head: gp``).
        head: ``"maml"`` (the adapted predictor, bootstrap members and ``beta``) or ``"gp"`` (a
            Gaussian process on the adapted predictor's features: the acquisition on its exact
            posterior, batches by kriging believer; ``members`` unused; see
            :mod:`~nas_lightning.search.posterior`).
        acquisition: ``"ucb"`` (mean + beta * spread, either head) or ``"ei"`` (expected
            improvement over the best measured value; ``head: gp`` only, ``beta`` unused).
    """

    batch: int = 1
    members: int = 8
    beta: float = 0.5
    head: str = "maml"
    acquisition: str = "ucb"

    def __post_init__(self) -> None:
        if not isinstance(self.batch, int) or self.batch < 1:
            raise UserError(f"meta batch must be an integer >= 1 (architectures per scoring step), got {self.batch!r}")
        if not isinstance(self.members, int) or self.members < 1:
            raise UserError(f"meta.members must be an integer >= 1 (bootstrap members), got {self.members!r}")
        if not math.isfinite(self.beta) or self.beta < 0:
            raise UserError(f"meta.beta must be a finite number >= 0 (the exploration weight), got {self.beta!r}")
        if self.head not in HEADS:
            raise UserError(f"meta.head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.acquisition not in GP_ACQUISITIONS or (self.acquisition != "ucb" and self.head != "gp"):
            raise UserError(f"meta.acquisition must be ucb, or ei with meta.head gp; got {self.acquisition!r} "
                            f"with head {self.head!r}")


class MetaSearch(Strategy):
    """Query the architectures a scorer likes best, re-scoring after every batch.

    Args:
        scorer: the predictor; called with everything queried so far as support.
        batch: architectures queried per scoring step.
        acquisition: ``"ucb"`` (member mean + ``beta`` * member std) or ``"thompson"`` (each
            pick takes the argmax of one member drawn with the generator).
        beta: exploration weight of ``"ucb"``.
        max_candidates: above this many task architectures, the large-space schedule of
            :meth:`phase` replaces scoring every unqueried architecture.
        num_parents: how many of the best queried architectures seed the mutation candidates of
            a global pick (large spaces only).
        init_random: large spaces only: the first queries of a run up to this count are random.
        init_global: large spaces only: queries up to this count are global picks (mutations of
            the ``num_parents`` best plus up to ``max_candidates`` random architectures).
        local_parents: large spaces only: after ``init_global``, the candidates are the unqueried
            mutations of this many best queried architectures (the best that have any left).
        global_every: large spaces only: after ``init_global``, every ``global_every``-th query
            is a global pick (0: never).

    Raises:
        UserError: for a batch below one, an unknown acquisition, a negative beta, schedule
            counts below zero or fewer than one parent.
    """

    name = "meta"

    def __init__(self, scorer: Scorer, batch: int = 1, acquisition: str = "ucb", beta: float = 1.0,
                 max_candidates: int = 20_000, num_parents: int = 10, init_random: int = 5, init_global: int = 10,
                 local_parents: int = 1, global_every: int = 8) -> None:
        if batch < 1:
            raise UserError(f"meta batch must be >= 1, got {batch}")
        if acquisition not in ACQUISITIONS:
            raise UserError(f"unknown acquisition {acquisition!r}; choose one of {', '.join(ACQUISITIONS)}")
        if beta < 0:
            raise UserError(f"meta beta must be >= 0, got {beta}")
        if max_candidates < 1 or num_parents < 1:
            raise UserError(f"max_candidates and num_parents must be >= 1, got {max_candidates}, {num_parents}")
        if min(init_random, init_global, global_every) < 0 or local_parents < 1:
            raise UserError(f"init_random, init_global and global_every must be >= 0 and local_parents >= 1, got "
                            f"{init_random}, {init_global}, {global_every}, {local_parents}")
        self.scorer, self.batch, self.acquisition, self.beta = scorer, batch, acquisition, beta
        self.max_candidates, self.num_parents = max_candidates, num_parents
        self.init_random, self.init_global = init_random, init_global
        self.local_parents, self.global_every = local_parents, global_every

    def proposer(self, oracle: Oracle, k: int, generator: torch.Generator) -> Proposer:
        return _MetaProposer(self, oracle, k, generator)

    def phase(self, num_queries: int) -> str:
        """The large-space schedule: ``"random"``, ``"global"`` or ``"local"`` for the next query
        after ``num_queries`` answered ones (see the class's arguments)."""
        if num_queries < self.init_random:
            return "random"
        if num_queries < self.init_global:
            return "global"
        every = self.global_every
        return "global" if every and (num_queries - self.init_global) % every == every - 1 else "local"

    def candidates(self, oracle: Oracle, pool: SearchState, generator: torch.Generator) -> torch.Tensor:
        """Unqueried architectures to score: all of them, or on a large space those of :meth:`phase`.

        Returns:
            Candidate indices ``[C]`` with ``C >= 1`` (callers ensure an unseen one exists).
        """
        if len(oracle.archs) <= self.max_candidates:
            return pool.unseen()
        phase = self.phase(oracle.num_queries)
        if phase == "random":
            return torch.tensor([pool.random_unseen(generator)])
        idx, values = oracle.history()
        ranked = idx[torch.argsort(values * oracle.sign, descending=True)].tolist()  # best first
        if phase == "local":
            cands = self._mutations(oracle, pool, ranked)
            return cands if len(cands) else torch.tensor([pool.random_unseen(generator)])
        parents = ranked[: self.num_parents]
        mutants = [int(m) for p in parents for m in oracle.space.neighbours(p)]  # best parents first
        mutants = torch.tensor(list(dict.fromkeys(mutants)), dtype=torch.long)
        randoms = torch.unique(oracle.archs[torch.randint(len(oracle.archs), (self.max_candidates,),
                                                          generator=generator)])
        randoms = randoms[~torch.isin(randoms, mutants)]
        cands = torch.cat([mutants, randoms])
        cands = cands[pool.fresh(cands)][: self.max_candidates]
        return cands if len(cands) else torch.tensor([pool.random_unseen(generator)])

    def _mutations(self, oracle: Oracle, pool: SearchState, ranked: list[int]) -> torch.Tensor:
        """The unqueried neighbours of the ``local_parents`` best architectures that have any."""
        out: list[int] = []
        used = 0
        for parent in ranked:
            nbrs = oracle.space.neighbours(parent)
            nbrs = nbrs[pool.fresh(nbrs)]
            if len(nbrs):
                out += nbrs.tolist()
                used += 1
                if used == self.local_parents:
                    break
        return torch.tensor(list(dict.fromkeys(out)), dtype=torch.long)

    def acquire(self, scores: torch.Tensor, cands: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """Pick ``n`` distinct candidates from member scores ``[M, C]``; ties broken at random."""
        perm = torch.randperm(len(cands), generator=generator)
        scores, cands = scores.index_select(1, perm), cands.index_select(0, perm)  # index_select: no thread pool
        n = min(n, len(cands))
        if self.acquisition == "ucb":
            if len(scores) == 1:
                utility = scores[0]
            else:  # mean + beta * std over members (written out: Tensor.std over dim 0 is slow on CPU)
                mean = scores.mean(0)
                std = (scores - mean).square_().mean(0).sqrt_()
                utility = mean + self.beta * std.nan_to_num_(0.0)
            if n == 1:  # argmax returns the first maximum: the stable sort's first pick
                return cands[torch.argmax(utility)].reshape(1)
            return cands.index_select(0, torch.argsort(utility, descending=True, stable=True)[:n])
        taken = torch.zeros(len(cands), dtype=torch.bool)
        picks = []
        for _ in range(n):
            member = int(torch.randint(len(scores), (1,), generator=generator))
            row = scores[member].clamp(min=torch.finfo(scores.dtype).min)  # a -inf score stays pickable
            row[taken] = -float("inf")
            best = int(torch.argmax(row))
            taken[best] = True
            picks.append(best)
        return cands[torch.tensor(picks, dtype=torch.long)]


class _MetaProposer:
    """Meta's proposer: the scorer conditions on what has finished and scores only what is
    neither finished nor running; a batch is scored once and proposed one by one."""

    def __init__(self, strategy: MetaSearch, oracle: Oracle, k: int, generator: torch.Generator) -> None:
        self.strategy, self.oracle, self.k, self.generator, self.pool = strategy, oracle, k, generator, SearchState(oracle)
        self.proposed, self.queue = 0, []

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
            log.debug("meta: proposing %s (support %d)", self.queue, len(support_archs))
        self.proposed += 1
        return self.queue.pop(0)

    def tell(self, arch: int, value: float) -> None:
        self.pool.signed[int(arch)] = float(value)

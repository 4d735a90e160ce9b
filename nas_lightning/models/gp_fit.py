"""Meta-learning the GP head's hyperparameters across the checkpoint's training tasks.

The encoder stays as MAML trained it. Episodes are drawn from the tables the predictor trained
on (never the task being searched or ranked): a support of K architectures, a query of others.
The seven hyperparameters of :class:`~nas_lightning.models.gp.GPHyper` are fitted by Adam to
minimise the mean negative log predictive density of the queries given their supports, over
every episode at once: the few-shot objective of deep kernel transfer, with the kernel's
features frozen.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol

import torch

from nas_lightning.errors import UserError
from nas_lightning.models import gp
from nas_lightning.models.scoring import standardise

log = logging.getLogger(__name__)


class Table(Protocol):
    """What the fit reads of a training table (a :class:`~nas_lightning.tasks.task.Task` has it)."""

    archs: torch.Tensor
    table: torch.Tensor
    direction: str

    @property
    def size(self) -> int: ...

    @property
    def sign(self) -> float: ...


@dataclass(frozen=True)
class GPOptions:
    """The GP head: how its hyperparameters are meta-learned on the checkpoint's training tasks.

    Args:
        ks: support sizes of the meta-training episodes.
        episodes: episodes per training task and support size.
        query: query architectures per episode.
        steps: Adam steps on the hyperparameters.
        lr: Adam's learning rate.
        seed: seeds the episodes (the same seed, the same hyperparameters).
        nu0: the task amplitude's prior weight in pseudo-measurements (see
            :mod:`~nas_lightning.models.gp`): infinite by default (``.inf`` on the command line:
            the posterior's amplitude stays 1; the reported intervals take theirs from ``folds``),
            a number fixes it, ``None`` (``null``) meta-learns it with the others. Why 1 by
            default: the search needed fewer queries with it (docs/findings.md, the GP head's
            third round).
        folds: folds of the support's cross-validation that sets the amplitude of the intervals
            that ranking reports (0: the posterior's own amplitude and normal intervals; one
            adaptation instead of one per fold).
    """

    ks: tuple[int, ...] = (5, 10, 20, 50)
    episodes: int = 8
    query: int = 100
    steps: int = 100
    lr: float = 0.05
    seed: int = 0
    nu0: float | None = math.inf
    folds: int = gp.CV_FOLDS

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 2 or min(self.episodes, self.query, self.steps) < 1 or not self.lr > 0:
            raise UserError(f"gp options: ks must be >= 2 and episodes, query, steps >= 1, lr > 0; got {self}")
        if self.folds < 0 or self.folds == 1:
            raise UserError(f"--gp.folds must be 0 (the in-sample amplitude) or at least 2, got {self.folds}")
        if self.nu0 is not None and not self.nu0 > 0:
            raise UserError(f"--gp.nu0 must be a number > 0 (.inf: the amplitude stays 1), got {self.nu0!r}")


def _episodes(module: torch.nn.Module, tasks: list[Table], opts: GPOptions) -> list[tuple]:
    """Per (task, K): stacked support and query embeddings and standardised values."""
    g = torch.Generator().manual_seed(opts.seed)
    out = []
    for task in tasks:
        for k in opts.ks:
            q = min(opts.query, task.size - k)
            if q < 1:
                continue
            picks = torch.stack([torch.randperm(task.size, generator=g)[: k + q] for _ in range(opts.episodes)])
            archs = task.archs[picks]
            y = task.table[picks].double() * task.sign  # table rows are aligned with task.archs
            ys, yq = standardise(y[:, :k], y[:, k:])
            params, z = gp.adapted(module, archs[:, :k], ys.float(), task.direction == "max")
            emb = [gp.embed(module, p, None if z is None else z[i], archs[i]) for i, p in enumerate(params)]
            f, h = torch.stack([e.f for e in emb]), torch.stack([e.h for e in emb])
            sq = (torch.cdist(h[:, :k], h[:, :k]).square(), torch.cdist(h[:, :k], h[:, k:]).square())
            out.append((gp.Embedded(f[:, :k], h[:, :k]), ys, gp.Embedded(f[:, k:], h[:, k:]), yq, sq))
    return out


def _grouped(episodes: list[tuple]) -> list[tuple]:
    """Episodes of the same support and query sizes stacked into one batch (one Cholesky call)."""
    groups: dict[tuple[int, int], list[tuple]] = {}
    for e in episodes:
        groups.setdefault((e[1].shape[-1], e[3].shape[-1]), []).append(e)

    def cat(items: list) -> object:
        first = items[0]
        if isinstance(first, gp.Embedded):
            return gp.Embedded(torch.cat([i.f for i in items]), torch.cat([i.h for i in items]))
        if isinstance(first, tuple):
            return tuple(torch.cat(parts) for parts in zip(*items))
        return torch.cat(items)

    return [tuple(cat(list(parts)) for parts in zip(*g)) for g in groups.values()]


def fit_hyper(module: torch.nn.Module, tasks: list[Table], opts: GPOptions = GPOptions()) -> gp.GPHyper:
    """The hyperparameters meta-learned on ``tasks`` (defaults when there are none)."""
    hp = gp.GPHyper(cv_folds=opts.folds, **({} if opts.nu0 is None else {"nu0": opts.nu0}))
    hp.log["nu0"].requires_grad_(opts.nu0 is None)  # fixed (the default: infinite) or learned
    if not tasks:
        log.warning("gp head: no training task of the checkpoint loads here; the head keeps default hyperparameters")
        return hp
    data = _grouped(_episodes(module, tasks, opts))
    opt = torch.optim.Adam([p for p in hp.parameters() if p.requires_grad], lr=opts.lr)
    with torch.enable_grad():
        for _ in range(opts.steps):
            loss = torch.stack([gp.predictive_nll(hp, *episode) for episode in data]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    log.info("gp head: hyperparameters %s (NLPD %.3f on %d training tasks)", hp.as_dict(), float(loss.detach()), len(tasks))
    return hp.requires_grad_(False)

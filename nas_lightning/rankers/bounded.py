"""Adapting on many measured rows in bounded memory: the rows split into chunks of at most
:data:`SUPPORT_BOUND`, one adaptation per chunk, the chunks' standardised scores averaged.

The rank loss of the inner loop compares every pair of support rows, so one adaptation on a
whole table of ``n`` rows holds ``n x n`` pairs (9 GB on the 26,206 rows of a NAS-Bench-Graph
table). Chunks keep each adaptation at ``SUPPORT_BOUND`` rows while every measured row still
counts; a table of at most ``SUPPORT_BOUND`` rows is one chunk, scored exactly as before.
"""

from __future__ import annotations

import logging

import torch

from nas_lightning.models.module import MetaPredictor
from nas_lightning.models.scoring import score

log = logging.getLogger(__name__)
SUPPORT_BOUND = 512  # rows per adaptation: 512 x 512 pairs, a few MB


def chunks(n: int, bound: int, seed: int = 0) -> list[torch.Tensor]:
    """Row positions ``0..n-1`` in ``ceil(n / bound)`` near-equal chunks of at most ``bound``,
    drawn by ``seed`` (one chunk, in order, when ``n <= bound``)."""
    if bound < 2:
        raise ValueError(f"bound must be >= 2, got {bound}")
    if n <= bound:
        return [torch.arange(n)]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.tensor_split(perm, -(-n // bound)))


@torch.no_grad()
def bounded_score(module: MetaPredictor, support_archs: torch.Tensor, targets: torch.Tensor,
                  candidates: torch.Tensor, maximise: bool = True, bound: int | None = None,
                  seed: int = 0) -> torch.Tensor:
    """Scores ``[C]`` of ``candidates`` (higher is better) adapted on every support row, at most
    ``bound`` rows (default :data:`SUPPORT_BOUND`) per adaptation.

    With more rows than ``bound``, each chunk's scores are standardised over the candidates and
    averaged (every chunk weighs alike); otherwise this is :func:`score`'s member 0.
    """
    bound = SUPPORT_BOUND if bound is None else bound
    parts = chunks(len(support_archs), bound, seed)
    if len(parts) == 1:
        return score(module, support_archs, targets, candidates, maximise)[0].cpu()
    log.info("adapting on %d rows in %d chunks of at most %d", len(support_archs), len(parts), bound)
    total = torch.zeros(len(candidates), dtype=torch.float64)
    for rows in parts:
        s = score(module, support_archs[rows], targets[rows], candidates, maximise)[0].cpu().double()
        std = s.std()
        total += (s - s.mean()) / (std if std > 1e-12 else 1.0)
    return (total / len(parts)).float()

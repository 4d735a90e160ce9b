"""The few-shot ranker protocol: fit on a measured support, then score candidates.

A ranker sees only what was measured (the support architectures and their values, oriented so
that higher is better); the full table is read by the caller, after the fact, to score it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Ranker(Protocol):
    """One way to rank a task from K measurements.

    Attributes:
        name: the method's name in reports (``meta``, ``transfer``...).
        notes: per-draw facts worth reporting beside its correlations (e.g. the table it picked).
    """

    name: str
    notes: dict[str, list[Any]]

    def fit(self, support: torch.Tensor, targets: torch.Tensor, seed: int) -> None:
        """Learn from ``support`` architectures and their ``targets`` (higher is better); ``seed``
        is the draw's seed (for whatever randomness the method has)."""
        ...

    def score(self, candidates: torch.Tensor) -> torch.Tensor | None:
        """Scores of ``candidates`` (sorted indices; higher is better), or ``None`` when the method
        has nothing to say on this draw."""
        ...

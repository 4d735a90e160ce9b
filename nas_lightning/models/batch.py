"""The episode batch: what the data layer hands the meta-learner, as a typed value."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class EpisodeBatch:
    """``T`` episodes, each a support set of ``K`` and a query set of ``Q`` architectures of one task.

    Targets are standardised by the support and have the direction folded in (higher is better).

    Attributes:
        pool: which pool (task) each episode was drawn from, ``[T]``.
        support_archs: support architecture indices, ``[T, K]``.
        query_archs: query architecture indices, ``[T, Q]`` (padding where ``query_mask`` is false).
        ys: support targets, ``[T, K]``.
        yq: query targets, ``[T, Q]`` (0 at padding).
        query_mask: valid query entries, ``[T, Q]`` (bool).
        maximise: the raw metric's direction of each episode's task, ``[T]`` (bool).
        weight: per-episode weights of a DDP shard (``None``: the plain mean).
    """

    pool: torch.Tensor
    support_archs: torch.Tensor
    query_archs: torch.Tensor
    ys: torch.Tensor
    yq: torch.Tensor
    query_mask: torch.Tensor
    maximise: torch.Tensor
    weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.support_archs)

    def select(self, index: slice | torch.Tensor) -> "EpisodeBatch":
        """The episodes at ``index`` (a slice or an index tensor), every field alike."""
        return self._map(lambda t: t[index])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "EpisodeBatch":
        """Every field on ``device``; floating-point fields also in ``dtype``."""
        return self._map(lambda t: t.to(device, dtype if t.is_floating_point() else None))

    def _map(self, fn) -> "EpisodeBatch":
        return EpisodeBatch(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                               for f in fields(self)})

"""Episodes: a support set and a query set drawn from one task, batched over a meta-batch.

A *pool* is what episodes are drawn from: architecture indices and their values with the
direction folded in (higher is always better). Meta-train pools hold a whole table; a target's
pool holds only the architectures its oracle has been asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nas_lightning.benchmarks.task import Task


@dataclass
class Pool:
    """Architectures and signed values one task's episodes are drawn from."""

    name: str
    archs: torch.Tensor  # [n] long
    values: torch.Tensor  # [n] float32, higher is better
    maximise: bool  # the raw metric's direction (task metadata, never a value)

    @classmethod
    def from_task(cls, task: Task) -> "Pool":
        """The whole table of a meta-train or meta-val task."""
        return cls(task.name, task.archs, (task.values() * task.sign).float(), task.direction == "max")

    @property
    def size(self) -> int:
        return len(self.archs)


def standardise(ys: torch.Tensor, yq: torch.Tensor, mask_s: torch.Tensor | None = None,
                eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardise support and query targets ``[..., N]`` with the support's mean and std only."""
    w = torch.ones_like(ys) if mask_s is None else mask_s.to(ys.dtype)
    n = w.sum(-1, keepdim=True).clamp_min(1.0)
    mean = (ys * w).sum(-1, keepdim=True) / n
    std = (((ys - mean) ** 2 * w).sum(-1, keepdim=True) / n).sqrt()
    std = torch.where(std > eps, std, torch.ones_like(std))
    return (ys - mean) / std, (yq - mean) / std


def sample_episodes(pools: list[Pool], tasks: int, support: int, query: int,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw ``tasks`` episodes; each picks a pool uniformly, then disjoint support and query sets.

    A pool with fewer than ``support + query`` architectures fills its query with what remains
    and masks the rest (``query_mask``).

    Returns:
        ``pool [T]``, ``support [T, K]``, ``query [T, Q]`` (arch indices), ``ys [T, K]``,
        ``yq [T, Q]`` (standardised by the support), ``query_mask [T, Q]``, ``maximise [T]``.
    """
    choice = torch.randint(len(pools), (tasks,), generator=generator).tolist()
    sup, qry, ys, yq, mask = [], [], [], [], []
    for c in choice:
        pool = pools[c]
        perm = torch.randperm(pool.size, generator=generator)[: support + query]
        s, q = perm[:support], perm[support:]
        m = torch.zeros(query, dtype=torch.bool)
        m[: len(q)] = True
        q = torch.cat([q, q.new_zeros(query - len(q))])
        sup.append(pool.archs[s])
        qry.append(pool.archs[q])
        ys.append(pool.values[s])
        yq.append(pool.values[q])
        mask.append(m)
    ys_t, yq_t = standardise(torch.stack(ys), torch.stack(yq))
    return {
        "pool": torch.tensor(choice),
        "support": torch.stack(sup),
        "query": torch.stack(qry),
        "ys": ys_t,
        "yq": yq_t * torch.stack(mask),
        "query_mask": torch.stack(mask),
        "maximise": torch.tensor([pools[c].maximise for c in choice]),
    }

"""Episodes: a support set and a query set drawn from one task, batched over a meta-batch.

A *pool* is what episodes are drawn from: architecture indices and their values with the
direction folded in (higher is always better). Meta-train pools hold a whole table; a target's
pool holds only the architectures its oracle has been asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nas_lightning.models.batch import EpisodeBatch
from nas_lightning.models.scoring import standardise
from nas_lightning.tasks.task import Task


@dataclass
class EpisodeSource:
    """Architectures and signed values one task's episodes are drawn from."""

    name: str
    archs: torch.Tensor  # [n] long
    values: torch.Tensor  # [n] float32, higher is better
    maximise: bool  # the raw metric's direction (task metadata, never a value)

    @classmethod
    def from_task(cls, task: Task) -> "EpisodeSource":
        """The whole table of a meta-train or meta-val task."""
        return cls(task.name, task.archs, (task.values() * task.sign).float(), task.direction == "max")

    @property
    def size(self) -> int:
        return len(self.archs)


def sample_episodes(pools: list[EpisodeSource], tasks: int, support: int, query: int,
                    generator: torch.Generator) -> EpisodeBatch:
    """Draw ``tasks`` episodes; each picks a pool uniformly, then disjoint support and query sets.

    A pool with fewer than ``support + query`` architectures fills its query with what remains
    and masks the rest (``query_mask``).

    Returns:
        The episodes, targets standardised by each support.
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
    return EpisodeBatch(
        pool=torch.tensor(choice),
        support_archs=torch.stack(sup),
        query_archs=torch.stack(qry),
        ys=ys_t,
        yq=yq_t * torch.stack(mask),
        query_mask=torch.stack(mask),
        maximise=torch.tensor([pools[c].maximise for c in choice]),
    )

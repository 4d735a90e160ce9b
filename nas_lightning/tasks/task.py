"""A task: one metric over (part of) a search space, with a direction and a name.

The values live in private tensors. Training code reads a meta-train task through
:meth:`Task.values`; a target task is wrapped in a :class:`~nas_lightning.oracles.base.TableOracle`
and read only through it (``query``) or through the explicitly named evaluation-only path
(``evaluation_only``).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import numpy as np

import torch

from nas_lightning.spaces import NB201, SearchSpace


@dataclass(eq=False)
class Task:
    """One metric of one table.

    Args:
        name: the task spec that names it everywhere (``nb201/cifar10/val_acc``).
        direction: ``"max"`` or ``"min"``: which way is better.
        archs: architecture indices the table holds, ``[n]`` (sorted, unique).
        table: metric value of each of ``archs``, ``[n]`` (mean over seeds where there are seeds).
        seed_table: optional per-training-seed values ``[n, S]``, NaN where a seed is missing.
        cost: optional simulated cost of evaluating each of ``archs`` (train seconds), ``[n]``.
        report_only: the task may be reported on but never searched or trained on.
        space: the search space the architecture indices belong to.
    """

    name: str
    direction: str
    archs: torch.Tensor
    table: torch.Tensor = field(repr=False)
    seed_table: torch.Tensor | None = field(default=None, repr=False)
    cost: torch.Tensor | None = field(default=None, repr=False)
    report_only: bool = False
    space: SearchSpace = NB201

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"task {self.name}: direction must be 'max' or 'min', got {self.direction!r}")
        self.archs = self.archs.long()
        self._position = torch.full((self.space.size,), -1, dtype=torch.long)
        self._position[self.archs] = torch.arange(len(self.archs))

    @functools.cached_property
    def fingerprint(self) -> str:
        """The table's identity by content: a hash of the space, the architectures and the values
        (to 6 significant digits, so a table and its CSV copy agree), never of the name or direction.
        Two specs naming the same table (an official and an embedded name, a relative and an
        absolute path, a copied file) have the same fingerprint. Only the hash leaves the task."""
        digest = hashlib.sha256(self.space.name.encode())
        digest.update(self.archs.numpy().astype("<i8").tobytes())
        digest.update("\n".join(np.char.mod("%.6g", self.table.double().numpy())).encode())
        return digest.hexdigest()[:16]

    @property
    def size(self) -> int:
        """How many architectures the task holds."""
        return len(self.archs)

    @property
    def sign(self) -> float:
        """``+1`` when higher is better, ``-1`` when lower is better."""
        return 1.0 if self.direction == "max" else -1.0

    def contains(self, indices: torch.Tensor) -> torch.Tensor:
        """Boolean mask: which of ``indices`` the table holds (out-of-range indices are not held)."""
        return self._positions(indices) >= 0

    def _positions(self, indices: torch.Tensor) -> torch.Tensor:
        """Row of each index in the table, ``-1`` where it is absent or out of range."""
        i = torch.as_tensor(indices).long()
        valid = (i >= 0) & (i < self.space.size)
        return torch.where(valid, self._position[i.clamp(0, self.space.size - 1)], -1)

    def values(self) -> torch.Tensor:
        """The whole table (``[size]``, aligned with ``archs``): training data of a meta-train task."""
        return self.table

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Values of the given architecture indices (all must be in the table).

        Raises:
            KeyError: if an index is not in the table.
        """
        pos = self._positions(indices)
        if (pos < 0).any():
            missing = indices[pos < 0][:5].tolist()
            raise KeyError(f"task {self.name} has no value for architectures {missing}")
        return self.table[pos]

    def lookup_seed(self, index: int, generator: torch.Generator) -> float:
        """The value of one training seed, drawn with ``generator`` (the mean if there are no seeds)."""
        pos = int(self._positions(torch.tensor([int(index)]))[0])
        if pos < 0:
            raise KeyError(f"task {self.name} has no value for architecture {index}")
        if self.seed_table is None:
            return float(self.table[pos])
        row = self.seed_table[pos]
        row = row[~torch.isnan(row)]
        return float(row[torch.randint(len(row), (1,), generator=generator)])

    def lookup_cost(self, indices: torch.Tensor) -> torch.Tensor:
        """Simulated evaluation cost of ``indices`` (zeros when the table has none)."""
        if self.cost is None:
            return torch.zeros(len(indices))
        pos = self._positions(indices)
        if (pos < 0).any():
            raise KeyError(f"task {self.name} has no cost for architectures {indices[pos < 0][:5].tolist()}")
        return self.cost[pos]

    def best(self) -> tuple[int, float]:
        """The optimum ``(index, value)`` of the table (evaluation only)."""
        pos = int(torch.argmax(self.table * self.sign))
        return int(self.archs[pos]), float(self.table[pos])

"""Oracles: the only door to a target task's values during training and search.

Every query stands for training a network for real: it is counted, charged once per
architecture, kept in order, and refused past the budget. :class:`Oracle` holds those rules
once; an implementation says only how one architecture is evaluated (:class:`TableOracle` looks
it up in a table; a training-backed oracle trains it). Scoring afterwards (regret, rank
correlation) goes through :meth:`Oracle.evaluation_only`, a separately named path, which is
``None`` where nothing knows the whole table (then regret-based outputs say so).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable

import torch

from nas_lightning.errors import UserError
from nas_lightning.spaces import SearchSpace
from nas_lightning.tasks.task import Task


class BudgetExhausted(RuntimeError):
    """Raised when a query would exceed the oracle's budget."""


class EvaluationView:
    """Full-table access to a target task, for scoring after the fact only (never for search)."""

    def __init__(self, task: Task) -> None:
        self._task = task

    @property
    def archs(self) -> torch.Tensor:
        """Architectures of the table."""
        return self._task.archs

    def values(self) -> torch.Tensor:
        """All values, aligned with :attr:`archs`."""
        return self._task.table

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Values of ``indices``."""
        return self._task.lookup(indices)

    def optimum(self) -> tuple[int, float]:
        """The best ``(index, value)`` of the table."""
        return self._task.best()

    def regret(self, value: float) -> float:
        """Distance of ``value`` from the table optimum, in the metric's units (>= 0)."""
        return abs(self.optimum()[1] - value) if value is not None else float("nan")


class Oracle(ABC):
    """Counted, budgeted, charge-once access to one task's values.

    Args:
        name: the task's name (its spec).
        space: the search space of the architectures.
        direction: ``"max"`` or ``"min"``.
        archs: the architectures that may be queried, ``[n]``.
        budget: the most distinct architectures that may be queried (``None``: unlimited).

    Raises:
        UserError: for a budget below one.
    """

    def __init__(self, name: str, space: SearchSpace, direction: str, archs: torch.Tensor,
                 budget: int | None = None) -> None:
        if budget is not None and budget < 1:
            raise UserError(f"budget must be at least 1 query, got {budget}")
        self.name, self.space, self.direction, self.budget = name, space, direction, budget
        self._archs = archs
        self._allowed = torch.zeros(space.size, dtype=torch.bool)
        self._allowed[archs] = True
        self._cache: dict[int, float] = {}
        self._order: list[int] = []

    @abstractmethod
    def _evaluate(self, indices: list[int]) -> list[float]:
        """Values of new architectures (each asked once, in order, already charged)."""

    # what a search may know: the task's identity and which architectures exist
    @property
    def sign(self) -> float:
        """``+1`` when higher is better, ``-1`` when lower is better."""
        return 1.0 if self.direction == "max" else -1.0

    @property
    def archs(self) -> torch.Tensor:
        """Architectures that may be queried (their values stay behind the oracle)."""
        return self._archs

    @property
    def num_queries(self) -> int:
        """Distinct architectures queried so far (each charged once)."""
        return len(self._order)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.num_queries

    @property
    def cost(self) -> float:
        """Cost (seconds of training, real or simulated) of everything queried; 0 when unknown."""
        return 0.0

    def costs(self) -> list[float]:
        """Cost of each query, in query order (zeros when unknown)."""
        return [0.0] * len(self._order)

    @property
    def fingerprint(self) -> str | None:
        """The target's identity by content (a table's :attr:`Task.fingerprint`; ``None``: unknown)."""
        return None

    def query(self, indices: int | Iterable[int] | torch.Tensor) -> torch.Tensor:
        """Values of ``indices``, in order; repeated architectures are free.

        Raises:
            BudgetExhausted: when a new architecture would exceed the budget (earlier ones in the
                same call are answered and recorded).
            KeyError: for an architecture the task does not hold (then nothing is charged).
        """
        raw = torch.as_tensor(indices)
        if raw.is_floating_point():
            raise TypeError(f"architecture indices must be integers, got {raw.dtype}")
        idx = raw.long().reshape(-1).tolist()
        new = [i for i in dict.fromkeys(idx) if i not in self._cache]
        foreign = [i for i in new if not (0 <= i < self.space.size and bool(self._allowed[i]))]
        if foreign:
            raise KeyError(f"task {self.name} has no value for architectures {foreign[:5]}")
        left = len(new) if self.budget is None else max(0, self.budget - self.num_queries)
        charged = new[:left]
        if charged:
            for i, value in zip(charged, self._evaluate(charged)):
                self._cache[i] = float(value)
                self._order.append(i)
        if len(charged) < len(new):
            raise BudgetExhausted(f"oracle for {self.name}: budget of {self.budget} queries is spent")
        return torch.tensor([self._cache[i] for i in idx], dtype=torch.float64)

    def seen(self, indices: torch.Tensor) -> torch.Tensor:
        """Boolean mask: which of ``indices`` were already queried."""
        return torch.tensor([int(i) in self._cache for i in indices.reshape(-1).tolist()], dtype=torch.bool)

    def history(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Queried architectures and their values, in query order."""
        idx = torch.tensor(self._order, dtype=torch.long)
        return idx, torch.tensor([self._cache[i] for i in self._order], dtype=torch.float64)

    def best(self) -> tuple[int, float] | None:
        """Best queried ``(index, value)`` so far, or ``None`` before the first query."""
        if not self._order:
            return None
        i = max(self._order, key=lambda k: self._cache[k] * self.sign)
        return i, self._cache[i]

    def evaluation_only(self) -> EvaluationView | None:
        """Full-table access for scoring results afterwards (``None``: no table knows the optimum).
        Never feed it to a search."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"task": self.name, "order": list(self._order), "values": [self._cache[i] for i in self._order],
                "budget": self.budget}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("task", self.name) != self.name:
            raise ValueError(f"oracle state of {state.get('task')} does not fit {self.name}")
        self._order = list(state["order"])
        self._cache = dict(zip(self._order, state["values"]))
        self.budget = state["budget"]


class TableOracle(Oracle):
    """An oracle over a benchmark table: a query looks the architecture up.

    Args:
        task: the target task.
        budget: the most distinct architectures that may be queried (``None``: unlimited).
        noisy: return one sampled training seed instead of the mean over seeds.
        seed: seeds the generator of the noisy mode.

    Raises:
        UserError: for a budget below one or a report-only task.
    """

    def __init__(self, task: Task, budget: int | None = None, noisy: bool = False, seed: int = 0) -> None:
        if task.report_only:
            raise UserError(f"task {task.name} is report-only (test accuracy); search on a validation metric instead")
        super().__init__(task.name, task.space, task.direction, task.archs, budget)
        self._task = task
        self.noisy = noisy
        self._generator = torch.Generator().manual_seed(seed)

    def _evaluate(self, indices: list[int]) -> list[float]:
        if self.noisy:
            return [self._task.lookup_seed(i, self._generator) for i in indices]
        return self._task.lookup(torch.tensor(indices, dtype=torch.long)).tolist()

    @property
    def cost(self) -> float:
        """Simulated cost (train seconds) of everything queried."""
        return float(self._task.lookup_cost(torch.tensor(self._order, dtype=torch.long)).sum()) if self._order else 0.0

    def costs(self) -> list[float]:
        return self._task.lookup_cost(torch.tensor(self._order, dtype=torch.long)).tolist() if self._order else []

    @property
    def fingerprint(self) -> str:
        return self._task.fingerprint

    def evaluation_only(self) -> EvaluationView:
        return EvaluationView(self._task)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "noisy": self.noisy, "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("noisy", self.noisy) != self.noisy:
            raise ValueError(f"oracle state of {state.get('task')} (noisy={state.get('noisy')}) does not fit "
                             f"{self.name} (noisy={self.noisy})")
        super().load_state_dict(state)
        self._generator.set_state(state["generator"])

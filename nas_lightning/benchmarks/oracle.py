"""The oracle: the only door to a target task's values during training and search.

Every query stands for training a network for real: it is counted, charged once per
architecture, kept in order, and refused past the budget. Scoring afterwards (regret, rank
correlation) goes through :meth:`Oracle.evaluation_only`, a separately named path.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from nas_lightning.benchmarks.task import Task
from nas_lightning.errors import UserError


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


class Oracle:
    """Counted, budgeted access to one task's values.

    Args:
        task: the target task.
        budget: the most distinct architectures that may be queried (``None``: unlimited).
        noisy: return one sampled training seed instead of the mean over seeds.
        seed: seeds the generator of the noisy mode.

    Raises:
        UserError: for a budget below one or a report-only task.
    """

    def __init__(self, task: Task, budget: int | None = None, noisy: bool = False, seed: int = 0) -> None:
        if budget is not None and budget < 1:
            raise UserError(f"budget must be at least 1 query, got {budget}")
        if task.report_only:
            raise UserError(f"task {task.name} is report-only (test accuracy); search on a validation metric instead")
        self._task = task
        self.budget = budget
        self.noisy = noisy
        self._generator = torch.Generator().manual_seed(seed)
        self._cache: dict[int, float] = {}
        self._order: list[int] = []

    # what a search may know: the task's identity and which architectures exist
    @property
    def name(self) -> str:
        return self._task.name

    @property
    def direction(self) -> str:
        return self._task.direction

    @property
    def sign(self) -> float:
        return self._task.sign

    @property
    def archs(self) -> torch.Tensor:
        """Architectures the task holds (their values stay behind the oracle)."""
        return self._task.archs

    @property
    def num_queries(self) -> int:
        """Distinct architectures queried so far (each charged once)."""
        return len(self._order)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.num_queries

    @property
    def cost(self) -> float:
        """Simulated cost (train seconds) of everything queried."""
        return float(self._task.lookup_cost(torch.tensor(self._order, dtype=torch.long)).sum()) if self._order else 0.0

    def query(self, indices: int | Iterable[int] | torch.Tensor) -> torch.Tensor:
        """Values of ``indices``, in order; repeated architectures are free.

        Raises:
            BudgetExhausted: when a new architecture would exceed the budget (earlier ones in the
                same call are answered and recorded).
            KeyError: for an architecture the task does not hold.
        """
        raw = torch.as_tensor(indices)
        if raw.is_floating_point():
            raise TypeError(f"architecture indices must be integers, got {raw.dtype}")
        idx = raw.long().reshape(-1).tolist()
        out = []
        for i in idx:
            if i not in self._cache:
                if self.budget is not None and self.num_queries >= self.budget:
                    raise BudgetExhausted(f"oracle for {self.name}: budget of {self.budget} queries is spent")
                if self.noisy:
                    value = self._task.lookup_seed(i, self._generator)
                else:
                    value = float(self._task.lookup(torch.tensor([i]))[0])
                self._cache[i] = value
                self._order.append(i)
            out.append(self._cache[i])
        return torch.tensor(out, dtype=torch.float64)

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

    def evaluation_only(self) -> EvaluationView:
        """Full-table access for scoring results afterwards. Never feed it to a search."""
        return EvaluationView(self._task)

    def state_dict(self) -> dict[str, Any]:
        return {"task": self.name, "noisy": self.noisy, "order": list(self._order), "values": [self._cache[i] for i in self._order],
                "generator": self._generator.get_state(), "budget": self.budget}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("task", self.name) != self.name or state.get("noisy", self.noisy) != self.noisy:
            raise ValueError(f"oracle state of {state.get('task')} (noisy={state.get('noisy')}) does not fit {self.name} (noisy={self.noisy})")
        self._order = list(state["order"])
        self._cache = dict(zip(self._order, state["values"]))
        self._generator.set_state(state["generator"])
        self.budget = state["budget"]

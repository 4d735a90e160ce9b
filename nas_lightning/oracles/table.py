"""The table oracle: a query looks the architecture up in a benchmark table."""

from __future__ import annotations

from typing import Any

import torch

from nas_lightning.errors import UserError
from nas_lightning.oracles.base import EvaluationView, Oracle
from nas_lightning.tasks.task import Task


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

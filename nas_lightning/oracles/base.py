"""The oracle protocol: counted, budgeted, charge-once access to one task's values.

Every query stands for training a network for real: it is counted, charged once per
architecture, kept in order, and refused past the budget. :class:`Oracle` holds those rules
once, for both ways of asking: synchronous (:meth:`Oracle.query`) and asynchronous
(:meth:`Oracle.submit` charges and starts, :meth:`Oracle.collect` waits and records,
:meth:`Oracle.cancel_pending` drops what runs). An implementation says only how one
architecture is evaluated (``_evaluate``), and, if it can run several at once, how one starts
(``_start``), finishes (``_finish``) and is cancelled (``_cancel``); the synchronous defaults
evaluate at submission, so a driver never asks which kind it has.

Fidelity: this protocol charges whole evaluations against a budget of architectures. A budget in
epochs, with candidates stopped early and continued later, is the contract of
:class:`~nas_lightning.oracles.fidelity.CurveOracle`; :class:`~nas_lightning.oracles.fidelity.FullTrainings`
shows one as an oracle of this protocol whose every query trains to the full length.

Scoring afterwards (regret, rank correlation) goes through :meth:`Oracle.evaluation_only`, a
separately named path, which is ``None`` where nothing knows the whole table (then
regret-based outputs say so).
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
        self._pending: dict[int, Any] = {}  # submitted and not collected, in order: what _start returned

    @abstractmethod
    def _evaluate(self, indices: list[int]) -> list[float]:
        """Values of new architectures (each asked once, in order, already charged)."""

    # how one submitted architecture runs (synchronous defaults: evaluated at submission)
    def _start(self, index: int) -> Any:
        """Start evaluating a charged architecture; what :meth:`_finish` needs to wait for it."""
        return self._evaluate([index])[0]

    def _finish(self, index: int) -> float:
        """Wait for a submitted architecture and return its value (it is still in ``_pending``)."""
        return float(self._pending[index])

    def _cancel(self, handles: list[Any]) -> None:
        """Stop the evaluations behind ``handles`` (nothing to stop by default)."""

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
        """Queries left: the budget less what was answered and what was submitted."""
        return None if self.budget is None else self.budget - self.num_queries - len(self._pending)

    @property
    def workers(self) -> int | None:
        """Evaluations this oracle runs at once (``None``: one at a time, a sequential search)."""
        return None

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
        for i in dict.fromkeys(idx):
            if i in self._pending:  # submitted earlier: already charged, wait for it
                self.collect(i)
        new = [i for i in dict.fromkeys(idx) if i not in self._cache]
        foreign = [i for i in new if not self._holds(i)]
        if foreign:
            raise KeyError(f"task {self.name} has no value for architectures {foreign[:5]}")
        left = len(new) if self.remaining is None else max(0, self.remaining)
        charged = new[:left]
        if charged:
            for i, value in zip(charged, self._evaluate(charged)):
                self._record(i, float(value))
        if len(charged) < len(new):
            raise self._spent()
        return torch.tensor([self._cache[i] for i in idx], dtype=torch.float64)

    def submit(self, index: int) -> None:
        """Charge a new architecture and start evaluating it (collect its value with :meth:`collect`).

        Raises:
            ValueError: for an architecture already queried or running (charged once).
            KeyError: for an architecture the task does not hold (nothing charged).
            BudgetExhausted: when the budget is spent by what was answered and what runs.
        """
        index = int(index)
        if index in self._cache or index in self._pending:
            raise ValueError(f"architecture {index} was already submitted to {self.name}")
        if not self._holds(index):
            raise KeyError(f"task {self.name} has no value for architecture {index}")
        if self.remaining is not None and self.remaining < 1:
            raise self._spent()
        self._pending[index] = self._start(index)

    def collect(self, index: int) -> float:
        """The value of a submitted architecture, waiting for it; recorded in the history (collect
        in submission order to keep the history in proposal order)."""
        index = int(index)
        value = self._finish(index)
        del self._pending[index]
        self._record(index, value)
        return value

    def cancel_pending(self) -> None:
        """Drop every submitted architecture not collected yet (uncharged again)."""
        if self._pending:
            self._cancel(list(self._pending.values()))
        self._pending.clear()

    def close(self) -> None:
        """Release what the oracle holds (workers, files); nothing by default."""

    def _holds(self, index: int) -> bool:
        return 0 <= index < self.space.size and bool(self._allowed[index])

    def _record(self, index: int, value: float) -> None:
        self._cache[index] = float(value)
        self._order.append(index)

    def _spent(self) -> BudgetExhausted:
        return BudgetExhausted(f"oracle for {self.name}: budget of {self.budget} queries is spent")

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

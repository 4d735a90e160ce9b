"""Multi-fidelity access to a task: train a candidate for some epochs, continue it later.

A :class:`CurveOracle` answers the validation accuracy of a candidate after a number of epochs of
its one full-length training (the learning-rate schedule is always the full length's, as a trial
of ASHA is one full run stopped early). What is charged is compute: every epoch a candidate is
trained in this search counts once (taking a candidate from 5 to 10 epochs costs 5) against a
budget in epochs, and the seconds those epochs took, as measured, are summed beside it.

Jobs run ``workers`` at once; answers are handed back in the order the jobs started (a fixed lag,
as :func:`~nas_lightning.search.driver.run_parallel` does), so a search decides the same whatever
the timing. :class:`FullTrainings` shows a curve oracle as an ordinary :class:`Oracle` whose every
query trains to the full length, so every existing strategy runs on the same compute budget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from nas_lightning.errors import UserError
from nas_lightning.oracles.base import BudgetExhausted, Oracle
from nas_lightning.spaces import SearchSpace


@dataclass(frozen=True)
class Answer:
    """One finished job: ``index`` trained to ``epochs`` has validation accuracy ``value``;
    ``epochs_done`` and ``seconds_done`` are the compute of every job finished so far, this one included."""

    index: int
    epochs: int
    value: float
    epochs_done: int
    seconds_done: float


class CurveOracle(ABC):
    """Counted access to validation curves, with a budget in epochs.

    Args:
        name: the task's name.
        space: the search space.
        archs: the architectures that may be trained ``[n]``.
        max_epochs: the full length of a training.
        budget: the most epochs of training a search may spend (``None``: unlimited).
        workers: jobs running at once.
    """

    direction = "max"
    sign = 1.0

    def __init__(self, name: str, space: SearchSpace, archs: torch.Tensor, max_epochs: int, budget: int | None = None,
                 workers: int = 1) -> None:
        if budget is not None and budget < 1:
            raise UserError(f"budget must be at least 1 epoch, got {budget}")
        if workers < 1:
            raise UserError(f"workers must be at least 1, got {workers}")
        self.name, self.space, self.archs, self.max_epochs = name, space, archs, int(max_epochs)
        self.budget, self.workers = budget, workers
        self._allowed = set(archs.tolist())
        self._target: dict[int, int] = {}  # epochs each candidate is or was asked for
        self._queue: deque[tuple[int, int, int]] = deque()  # running jobs, oldest first: (index, from, to)
        self.epochs_spent, self.epochs_done, self.seconds_done = 0, 0, 0.0
        self.answers: list[Answer] = []

    # what an implementation provides
    @abstractmethod
    def _launch(self, index: int, start: int, stop: int) -> None:
        """Start training ``index`` from epoch ``start`` to ``stop`` (the oracle's own bookkeeping is done)."""

    @abstractmethod
    def _result(self, index: int, start: int, stop: int) -> tuple[float, float]:
        """Wait for that job: ``(validation accuracy after stop, seconds from start to stop)``."""

    def final_test(self, index: int) -> float | None:
        """Evaluation only, after a search: the test accuracy of a fully trained candidate (``None``: unknown)."""
        return None

    def close(self) -> None:
        """Release workers (none by default)."""

    # the protocol
    @property
    def remaining(self) -> int | None:
        """Epochs left: the budget less what was started."""
        return None if self.budget is None else self.budget - self.epochs_spent

    @property
    def running(self) -> int:
        return len(self._queue)

    def trained_to(self, index: int) -> int:
        """Epochs ``index`` is (or is being) trained to in this search."""
        return self._target.get(int(index), 0)

    def cost(self, index: int, epochs: int) -> int:
        """Epochs a job taking ``index`` to ``epochs`` would charge."""
        return max(0, int(epochs) - self.trained_to(index))

    def start(self, index: int, epochs: int) -> None:
        """Charge and start training ``index`` to ``epochs`` (from where this search left it).

        Raises:
            KeyError: for an architecture the task does not hold.
            ValueError: for epochs outside ``(trained_to(index), max_epochs]`` or a candidate still running.
            BudgetExhausted: when the job would exceed the budget (nothing charged).
        """
        index, epochs = int(index), int(epochs)
        if index not in self._allowed:
            raise KeyError(f"task {self.name} has no curve for architecture {index}")
        if any(i == index for i, _, _ in self._queue):
            raise ValueError(f"architecture {index} is still training")
        start = self.trained_to(index)
        if not start < epochs <= self.max_epochs:
            raise ValueError(f"architecture {index} is at epoch {start}; ask for an epoch in ({start}, {self.max_epochs}]")
        if self.remaining is not None and epochs - start > self.remaining:
            raise BudgetExhausted(f"{self.name}: {epochs - start} more epochs exceed the {self.remaining} left of {self.budget}")
        self.epochs_spent += epochs - start
        self._target[index] = epochs
        self._queue.append((index, start, epochs))
        self._launch(index, start, epochs)

    def wait(self) -> Answer:
        """The oldest running job's answer (waiting for it)."""
        if not self._queue:
            raise RuntimeError("nothing is running")
        index, start, stop = self._queue[0]
        value, seconds = self._result(index, start, stop)
        self._queue.popleft()
        self.epochs_done += stop - start
        self.seconds_done += seconds
        answer = Answer(index, stop, float(value), self.epochs_done, self.seconds_done)
        self.answers.append(answer)
        return answer

    def cancel(self) -> None:
        """Forget running jobs (their epochs stay charged: the compute was spent)."""
        for index, start, _ in self._queue:
            self._target[index] = start
        self._queue.clear()


class FullTrainings(Oracle):
    """A curve oracle as an ordinary oracle: each query trains a candidate to the full length, and
    the query budget is what the epoch budget pays for."""

    def __init__(self, curves: CurveOracle) -> None:
        super().__init__(curves.name, curves.space, "max", curves.archs, None)
        self.curves = curves

    @property
    def remaining(self) -> int | None:
        left = self.curves.remaining
        return None if left is None else left // self.curves.max_epochs  # running jobs are charged already

    @property
    def workers(self) -> int | None:
        return self.curves.workers

    def _evaluate(self, indices: list[int]) -> list[float]:
        out = []
        for i in indices:
            self.curves.start(i, self.curves.max_epochs)
            out.append(self.curves.wait().value)
        return out

    def _start(self, index: int) -> Any:
        self.curves.start(index, self.curves.max_epochs)
        return None

    def _finish(self, index: int) -> float:
        answer = self.curves.wait()  # jobs answer oldest first, and results are collected in submission order
        if answer.index != index:
            raise RuntimeError(f"collected {index} while {answer.index} was the oldest job")
        return answer.value

    def _cancel(self, handles: list[Any]) -> None:
        self.curves.cancel()

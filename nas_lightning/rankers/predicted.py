"""A ranking score as a value in a table's own unit (predicted milliseconds on a latency table)."""

from __future__ import annotations

import torch

from nas_lightning.rankers.latency_limit import calibrate
from nas_lightning.tasks.spec import TaskSpec
from nas_lightning.tasks.task import Task


def metric_name(task: Task) -> str:
    """The column (``csv:FILE#latency_ms`` -> ``latency_ms``) or metric (``nb201/cifar10/latency``
    -> ``latency``) a task's values are."""
    try:
        spec = TaskSpec.parse(task.name)
    except ValueError:
        return task.name.rpartition("#")[2] or "value"
    return (spec.column if spec.is_csv else spec.metric) or "value"


def predicted_values(task: Task, archs: torch.Tensor, scores: torch.Tensor,
                     measured: dict[int, float]) -> torch.Tensor | None:
    """Predicted values of ``archs`` in ``task``'s unit, or ``None`` where the scores cannot be read so.

    On a lower-better table of positive values (latency, time, parameters), the log of the
    measured values is fitted by a decreasing monotone function of the score (the fit the latency
    model of ``constrained`` uses), so the ranking is kept and the figures are in the table's unit.
    """
    if task.direction != "min" or len(measured) < 2 or min(measured.values()) <= 0:
        return None
    pos = {int(a): i for i, a in enumerate(archs.tolist())}
    rows = [pos[a] for a in measured if a in pos]
    if len(rows) < 2:
        return None
    logs = torch.tensor([measured[int(archs[i])] for i in rows], dtype=torch.float64).log()
    return calibrate(scores[rows].double(), logs, scores.double()).exp()

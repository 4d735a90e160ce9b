"""From a task spec to its tasks: the one place a :class:`TaskSpec` is resolved to tables."""

from __future__ import annotations

from pathlib import Path

from nas_lightning.errors import UserError
from nas_lightning.tasks.csvtable import load_csv
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.tasks.nbg import load_nbg
from nas_lightning.tasks.official import load_official
from nas_lightning.tasks.spec import TaskSpec
from nas_lightning.tasks.task import Task


def load_tasks(spec: str | TaskSpec, official_path: str | None = None, csv_dir: str | Path | None = None) -> list[Task]:
    """Resolve a task spec into its tasks (a csv glob, or a csv without a column, may give several).

    Args:
        spec: the spec's text or parsed value.
        official_path: the official NB201 file for ``nb201-official/...`` (else ``NB201_PATH``).
        csv_dir: base folder of relative ``csv:`` paths.

    Raises:
        UserError: for an unknown or malformed spec, dataset or metric, or a bad table.
    """
    spec = (spec if isinstance(spec, TaskSpec) else TaskSpec.parse(spec)).under(csv_dir)
    if spec.is_csv:
        return [t for f in spec.files() for t in load_csv(f, spec.column, spec.direction)]
    if spec.kind == "nb201":
        return [load_embedded(spec.dataset, spec.metric)]
    if spec.kind == "nbg":
        return [load_nbg(spec.dataset, spec.metric)]
    return [load_official(spec.dataset, spec.metric, official_path)]


def load_task(spec: str | TaskSpec, official_path: str | None = None, csv_dir: str | Path | None = None) -> Task:
    """The one task a spec names.

    Raises:
        UserError: as :func:`load_tasks`, or when the spec gives several tasks.
    """
    tasks = load_tasks(spec, official_path, csv_dir)
    if len(tasks) != 1:
        raise UserError(f"task spec {str(spec)!r} gives {len(tasks)} tasks; name one file and one column (csv:<file>#<column>)")
    return tasks[0]


def load_all(specs: list[str], official_path: str | None = None, csv_dir: str | Path | None = None) -> list[Task]:
    """Resolve several specs, in order."""
    return [t for s in specs for t in load_tasks(s, official_path, csv_dir)]

"""From a task spec to its tasks: the one place a :class:`TaskSpec` is resolved to tables."""

from __future__ import annotations

from pathlib import Path

from nas_lightning.errors import UserError
from nas_lightning.tasks.csvtable import load_csv
from nas_lightning.tasks.families import FAMILIES, family_of_space, get_family
from nas_lightning.tasks.spec import TaskSpec
from nas_lightning.tasks.task import Task


def load_tasks(spec: str | TaskSpec, csv_dir: str | Path | None = None) -> list[Task]:
    """Resolve a task spec into its tasks (a csv glob, or a csv without a column, may give several).

    Args:
        spec: the spec's text or parsed value.
        csv_dir: base folder of relative ``csv:`` paths.

    Raises:
        UserError: for an unknown or malformed spec, dataset or metric, or a bad table.
    """
    spec = (spec if isinstance(spec, TaskSpec) else TaskSpec.parse(spec)).under(csv_dir)
    if spec.is_csv:
        return [t for f in spec.files() for t in load_csv(f, spec.column, spec.direction)]
    return [get_family(spec.kind).load(spec.dataset, spec.metric)]


def load_task(spec: str | TaskSpec, csv_dir: str | Path | None = None) -> Task:
    """The one task a spec names.

    Raises:
        UserError: as :func:`load_tasks`, or when the spec gives several tasks.
    """
    tasks = load_tasks(spec, csv_dir)
    if len(tasks) != 1:
        raise UserError(f"task spec {str(spec)!r} gives {len(tasks)} tasks; name one file and one column (csv:<file>#<column>)")
    return tasks[0]


def load_all(specs: list[str], csv_dir: str | Path | None = None) -> list[Task]:
    """Resolve several specs, in order."""
    return [t for s in specs for t in load_tasks(s, csv_dir)]


def listed_specs() -> list[str]:
    """Every spec the registered families list, family by family."""
    return [s for f in FAMILIES.values() for s in f.specs()]


def params_table(task: Task) -> Task | None:
    """The parameter counts behind the ``params`` baseline for ``task`` (``None``: none known):
    its family's, or for a csv table the family of its search space."""
    spec = TaskSpec.parse(task.name)
    family = family_of_space(task.space) if spec.is_csv else FAMILIES.get(spec.kind)
    return None if family is None else family.params(spec.dataset)

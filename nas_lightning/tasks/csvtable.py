"""Users' own tables: ``csv:<path>[#<column>][@min|@max]``, ``.csv`` or ``.csv.gz``.

A column ``arch`` holds architecture strings of the space; every other column is a metric.
"""

from __future__ import annotations

import csv
import gzip
import math
from typing import IO, Iterator

import torch

from nas_lightning.errors import UserError
from nas_lightning.spaces import NB201, SearchSpace
from nas_lightning.tasks.spec import default_direction
from nas_lightning.tasks.task import Task


def _open(path: str) -> IO[str]:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        return opener(path, "rt", newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"CSV file {path!r} does not exist; give a path to a .csv or .csv.gz table") from None
    except OSError as err:
        raise UserError(f"CSV file {path!r} is unreadable ({err}); give a plain or gzipped CSV table") from None


def _rows(path: str) -> Iterator[tuple[int, list[str]]]:
    """The non-blank rows of a CSV file with their line numbers, streamed (never the whole file at once)."""
    with _open(path) as f:
        reader = csv.reader(f)
        try:
            for row in reader:
                if any(c.strip() for c in row):
                    yield reader.line_num, row
        except (OSError, UnicodeDecodeError, csv.Error, EOFError) as err:
            raise UserError(f"CSV file {path!r} is unreadable ({err}); give a plain or gzipped CSV table") from None


def _check_direction(path: str, direction: str | None, header: list[str]) -> None:
    """A ``@word`` after a csv path that is not ``@min``/``@max``: say what it is not, and the columns."""
    if direction in (None, "min", "max"):
        return
    metrics = [c for c in header if c != "arch"]
    hint = (f"to use the column {direction!r} write csv:{path}#{direction}" if direction in metrics else
            f"{path!r} has no column {direction!r} either (columns: {', '.join(metrics) or 'none'}); "
            f"name a column with csv:{path}#COLUMN")
    raise UserError(f"task spec csv:{path}@{direction}: @{direction} is not a direction (@min or @max); {hint}")


def load_csv(path: str, column: str | None = None, direction: str | None = None, space: SearchSpace = NB201) -> list[Task]:
    """Tasks of one CSV table: one per numeric column, or the one named.

    The file is streamed and only the ``arch`` column and the metric columns asked for are kept,
    so a wide table read for one column costs memory for that column only.

    Raises:
        UserError: for a missing/unreadable/empty file, a missing ``arch`` column, a missing
            metric column, a ``@direction`` other than min or max, non-numeric or NaN values,
            duplicate or foreign-space architectures.
    """
    rows = _rows(path)
    try:
        try:
            header = [c.strip() for c in next(rows)[1]]
        except StopIteration:
            raise UserError(f"CSV file {path!r} is empty; it needs a header with 'arch' and numeric columns") from None
        _check_direction(path, direction, header)
        if "arch" not in header:
            raise UserError(f"CSV file {path!r} has no 'arch' column (columns: {', '.join(header)}); add one holding {space.name} architecture strings")
        metrics = [c for c in header if c != "arch"]
        if column is not None and column not in metrics:
            raise UserError(f"CSV file {path!r} has no column {column!r}; choose one of {', '.join(metrics)}")
        if not metrics:
            raise UserError(f"CSV file {path!r} has no metric column beside 'arch'; add a numeric column")
        wanted = [column] if column else metrics
        a, cols = header.index("arch"), [header.index(c) for c in wanted]
        archs: list[int] = []
        values: list[list[float]] = [[] for _ in cols]
        for n, row in rows:
            try:
                archs.append(space.from_string(row[a] if a < len(row) else ""))
            except UserError as err:
                raise UserError(f"CSV file {path!r}, line {n}: {err}") from None
            for c, col, out in zip(cols, wanted, values):
                out.append(_number(row[c].strip() if c < len(row) else "", path, n, col))
    finally:
        rows.close()
    if not archs:
        raise UserError(f"CSV file {path!r} has a header but no rows; add one row per architecture")
    idx = torch.tensor(archs)
    uniq, counts = torch.unique(idx, return_counts=True)
    if (counts > 1).any():
        dup = space.to_string(int(uniq[counts > 1][0]))
        raise UserError(f"CSV file {path!r} lists architecture {dup} more than once; keep one row per architecture")
    order = torch.argsort(idx)
    return [Task(name=f"csv:{path}#{col}", direction=direction or default_direction(col), archs=idx[order],
                 table=torch.tensor(vals, dtype=torch.float64)[order], space=space)
            for col, vals in zip(wanted, values)]


def _number(cell: str, path: str, line: int, column: str) -> float:
    """One metric cell as a finite float."""
    try:
        v = float(cell)
    except ValueError:
        raise UserError(f"CSV file {path!r}, line {line}, column {column!r}: {cell!r} is not a number; every value must be numeric") from None
    if not math.isfinite(v):
        raise UserError(f"CSV file {path!r}, line {line}, column {column!r}: {cell!r} is not finite; remove or fill that row")
    return v

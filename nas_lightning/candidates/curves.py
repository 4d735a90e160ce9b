"""Learning-curve tables: trained cells with their validation curve, as plain CSV.

A curve table has one row per cell: ``arch`` (NB201 string), ``val_acc`` and ``test_acc`` (after
the last epoch), ``params``, ``seconds`` (the whole training), then ``val_acc_e<k>`` and
``seconds_e<k>`` for every epoch ``k`` (accuracy after epoch ``k``, seconds of training up to
it). It is written by ``search.py tabulate`` from a result store, is a task for ``train.py`` and
``search.py`` as ``csv:FILE#val_acc`` (or any epoch's column), and is what
:class:`~nas_lightning.oracles.replay.ReplayOracle` answers from.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torchmetrics.functional import spearman_corrcoef

from nas_lightning.errors import UserError
from nas_lightning.spaces import NB201

FIXED = ("arch", "val_acc", "test_acc", "params", "seconds")


@dataclass(frozen=True)
class CurveTable:
    """Cells with full validation curves.

    Args:
        archs: NB201 indices ``[n]``.
        val: validation accuracy after each epoch ``[n, E]`` (percent).
        seconds: cumulative training seconds after each epoch ``[n, E]``.
        test: test accuracy after the last epoch ``[n]`` (NaN where unknown).
        total_seconds: seconds of each whole training ``[n]`` (test included).
    """

    archs: torch.Tensor
    val: torch.Tensor
    seconds: torch.Tensor
    test: torch.Tensor
    total_seconds: torch.Tensor

    @property
    def epochs(self) -> int:
        return int(self.val.shape[1])

    @property
    def final(self) -> torch.Tensor:
        """Validation accuracy after the last epoch ``[n]``."""
        return self.val[:, -1]

    def rung_spearman(self, epochs: Iterable[int]) -> dict[int, float]:
        """Spearman rank correlation between the accuracy after each of ``epochs`` and the final one."""
        return {e: spearman(self.val[:, e - 1], self.final) for e in epochs}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rho (ties share their mean rank), torchmetrics' computation."""
    return float(spearman_corrcoef(a.double(), b.double()))


def table_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """CSV rows of finished, curve-carrying store rows (other rows are left out)."""
    out = []
    for r in rows:
        if r.get("status") != "ok" or not r.get("curve"):
            continue
        row = {"arch": r["arch"], "val_acc": r["val_acc"], "test_acc": r["test_acc"], "params": r["params"], "seconds": r["seconds"]}
        row.update({f"val_acc_e{k}": v for k, (v, _) in enumerate(r["curve"], start=1)})
        row.update({f"seconds_e{k}": s for k, (_, s) in enumerate(r["curve"], start=1)})
        out.append(row)
    return out


def write_table(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Write :func:`table_rows` to ``path`` (columns: :data:`FIXED`, then the epochs')."""
    epochs = max((len([k for k in r if k.startswith("val_acc_e")]) for r in rows), default=0)
    fields = [*FIXED, *(f"val_acc_e{k}" for k in range(1, epochs + 1)), *(f"seconds_e{k}" for k in range(1, epochs + 1))]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def read_table(path: str | Path) -> CurveTable:
    """A curve table from its CSV (a plain text file: nothing in it runs).

    Raises:
        UserError: for a missing file, missing columns, a bad number or architecture, or no rows.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"curve table {str(path)!r} is unreadable ({getattr(err, 'strerror', None) or err}); give a CSV written by search.py tabulate") from None
    epochs = sum(1 for c in fields if c.startswith("val_acc_e"))
    wanted = [*FIXED, *(f"val_acc_e{k}" for k in range(1, epochs + 1)), *(f"seconds_e{k}" for k in range(1, epochs + 1))]
    missing = [c for c in wanted if c not in fields]
    if epochs == 0 or missing or not rows:
        what = "no rows" if not rows and not missing and epochs else f"no column {(missing or ['val_acc_e1'])[0]}"
        raise UserError(f"curve table {str(path)!r} has {what}; give a CSV written by search.py tabulate")

    def number(r: dict[str, str], c: str, line: int) -> float:
        text = r.get(c) or ""
        if text == "" and c == "test_acc":
            return float("nan")
        try:
            return float(text)
        except ValueError:
            raise UserError(f"curve table {str(path)!r}, line {line}: {c}={text!r} is not a number; fix or rewrite the table") from None

    archs, val, sec, test, total = [], [], [], [], []
    for line, r in enumerate(rows, start=2):
        try:
            archs.append(NB201.from_string(r["arch"]))
        except UserError as err:
            raise UserError(f"curve table {str(path)!r}, line {line}: {err}") from None
        val.append([number(r, f"val_acc_e{k}", line) for k in range(1, epochs + 1)])
        sec.append([number(r, f"seconds_e{k}", line) for k in range(1, epochs + 1)])
        test.append(number(r, "test_acc", line))
        total.append(number(r, "seconds", line))
    if len(set(archs)) != len(archs):
        raise UserError(f"curve table {str(path)!r} lists an architecture twice; keep one row per cell")
    return CurveTable(torch.tensor(archs), torch.tensor(val, dtype=torch.float64), torch.tensor(sec, dtype=torch.float64),
                      torch.tensor(test, dtype=torch.float64), torch.tensor(total, dtype=torch.float64))

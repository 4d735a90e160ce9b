"""An embedded SQLite store of finished trainings, one row per (arch, dataset, recipe, seed).

Each row also says which Ray node trained it (``node``; empty for a training in the driver's
process). Only the driver writes: Ray workers send their results back to it.

One file, WAL journal, ``synchronous=FULL``: each :meth:`ResultStore.put` is its own committed
transaction, so a process killed at any moment (``kill -9``) loses nothing that was put before.
A ``UNIQUE`` constraint keeps one row per key: a second ``ok`` result for a finished key is
ignored; a ``failed`` row (NaN loss, out of memory) is replaced by a later ``ok`` one, so a
failure can be retried. Several processes may share one file (SQLite locks; 30 s busy timeout).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Mapping

from nas_lightning.errors import UserError

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "arch", "dataset", "recipe", "seed", "val_acc", "test_acc", "params", "seconds", "status", "reason", "finished_at", "node",
)
_SCHEMA_VERSION = 2  # 2: the Ray node a training ran on (version 1 files gain the column when opened)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    dataset TEXT NOT NULL,
    recipe TEXT NOT NULL,
    seed INTEGER NOT NULL,
    val_acc REAL,
    test_acc REAL,
    params REAL,
    seconds REAL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    reason TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    UNIQUE (arch, dataset, recipe, seed)
)
"""
_INSERT = f"""
INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})
ON CONFLICT (arch, dataset, recipe, seed) DO UPDATE SET
    {', '.join(f'{c} = excluded.{c}' for c in COLUMNS[4:])}
WHERE results.status = 'failed' AND excluded.status = 'ok'
"""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """Finished trainings in one SQLite file (created with its folder if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise UserError(f"result store {str(self.path)!r} is a folder; give a file path such as {str(self.path / 'results.sqlite')!r}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, _SCHEMA_VERSION):
                raise UserError(f"result store {str(self.path)!r} has schema version {version}; this version reads {_SCHEMA_VERSION}: use a new file")
            with self._conn:
                self._conn.execute(_SCHEMA)
                if version == 1:
                    self._conn.execute("ALTER TABLE results ADD COLUMN node TEXT NOT NULL DEFAULT ''")
                self._conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as err:
            raise UserError(f"result store {str(self.path)!r} is not a usable SQLite file ({err}); give a new path") from None
        self._conn.row_factory = sqlite3.Row

    def put(self, arch: str, dataset: str, recipe: str, seed: int, result: Mapping[str, Any]) -> bool:
        """Record one finished training in its own committed transaction.

        ``result`` holds ``status`` ('ok'/'failed') and optionally ``val_acc``, ``test_acc``,
        ``params``, ``seconds``, ``reason``, ``finished_at`` (default: now, UTC), ``node`` (the Ray
        node that trained it; "" in this process).
        Returns whether the row was written (False: the key was already finished).

        Raises:
            UserError: for a status other than 'ok' or 'failed'.
        """
        status = result.get("status")
        if status not in ("ok", "failed"):
            raise UserError(f"result status {status!r} is not 'ok' or 'failed'; record only finished trainings")
        row = (
            str(arch), str(dataset), str(recipe), int(seed),
            *(None if result.get(k) is None else float(result[k]) for k in ("val_acc", "test_acc", "params", "seconds")),
            status, str(result.get("reason") or ""), str(result.get("finished_at") or _now()), str(result.get("node") or ""),
        )
        with self._conn:
            written = self._conn.execute(_INSERT, row).rowcount > 0
        if not written:
            log.info("%s seed %d on %s/%s already finished; kept the stored row", arch, seed, dataset[:12], recipe)
        return written

    def record(self, result: Mapping[str, Any], dataset: str) -> bool:
        """:meth:`put` a :func:`~nas_lightning.candidates.recipe.train_candidate` result (its arch, recipe key, seed)."""
        return self.put(result["arch"], dataset, result["recipe"], result["seed"], result)

    def get(self, arch: str, dataset: str, recipe: str, seed: int) -> dict[str, Any] | None:
        """The finished record of a key, or None."""
        cur = self._conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM results WHERE arch = ? AND dataset = ? AND recipe = ? AND seed = ?",
            (str(arch), str(dataset), str(recipe), int(seed)),
        )
        found = cur.fetchone()
        return dict(found) if found is not None else None

    def rows(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        return [dict(r) for r in self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM results ORDER BY id")]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def write_csv(self, path: str | Path) -> int:
        """Export every record to a CSV file (header = :data:`COLUMNS`); returns the row count."""
        rows = self.rows()
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        return len(rows)

    def close(self) -> None:
        """Close the connection (committed rows are already on disk)."""
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

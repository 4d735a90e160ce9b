"""An embedded SQLite store of finished trainings, one row per (arch, dataset, recipe, seed).

Each finished row keeps its validation curve (``curve``: accuracy and cumulative seconds after
every epoch, JSON; empty for rows written before curves were kept). Trainings stopped before the
recipe's full length (multi-fidelity search) live in a second table, ``progress``: the epochs
reached, the curve so far and a snapshot to continue from (tensors only, loaded with
``torch.load(weights_only=True)``: opening a store never runs code); a later stop of the same key
replaces an earlier one, and finishing the training removes it.

Each row also says which Ray node trained it (``node``; empty for a training in the driver's
process). Only the driver writes: Ray workers send their results back to it. ``dataset`` and
``recipe`` are hashes (the data's fingerprint, :attr:`~nas_lightning.candidates.recipe.Recipe.key`);
the ``descriptions`` table keeps beside each hash what it stands for (the task and its sizes, the
recipe's fields as JSON), written with the first row that uses it: :meth:`ResultStore.description`.

WAL journal, ``synchronous=FULL``: each :meth:`ResultStore.put` is its own committed transaction,
so a process killed at any moment (``kill -9``) loses nothing that was put before. While a search
runs, and after one was killed, the store is the ``.sqlite`` file together with its ``-wal`` file
(recent rows live there until SQLite copies them over): copy or move both, never the ``.sqlite``
alone. A ``UNIQUE`` constraint keeps one row per key: a second ``ok`` result for a finished key is
ignored; a ``failed`` row (NaN loss, out of memory) is replaced by a later ``ok`` one, so a
failure can be retried. Several processes may share one file (SQLite locks): a write that finds
the store locked by another program waits, with a warning each busy timeout (30 s), rather than
losing a finished training.

An existing file is first checked read-only (:func:`~nas_lightning.candidates.store_guard.inspect_store`):
another application's database, a newer schema, or a damaged store (SQLite's ``quick_check``, the
one-row-per-key index) is refused with the file unchanged.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, Iterator, Mapping

from nas_lightning.errors import UserError
from nas_lightning.candidates.store_guard import SCHEMA_VERSION, check_store, wait_while_busy

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "arch", "dataset", "recipe", "seed", "val_acc", "test_acc", "params", "seconds", "status", "reason", "finished_at", "node", "curve",
)
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
    curve TEXT NOT NULL DEFAULT '',
    UNIQUE (arch, dataset, recipe, seed)
)
"""
_PROGRESS = """
CREATE TABLE IF NOT EXISTS progress (
    arch TEXT NOT NULL,
    dataset TEXT NOT NULL,
    recipe TEXT NOT NULL,
    seed INTEGER NOT NULL,
    epochs INTEGER NOT NULL,
    curve TEXT NOT NULL,
    seconds REAL NOT NULL,
    snapshot BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (arch, dataset, recipe, seed)
)
"""
_SAVE_PROGRESS = """
INSERT INTO progress (arch, dataset, recipe, seed, epochs, curve, seconds, snapshot, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (arch, dataset, recipe, seed) DO UPDATE SET
    epochs = excluded.epochs, curve = excluded.curve, seconds = excluded.seconds, snapshot = excluded.snapshot,
    updated_at = excluded.updated_at
WHERE excluded.epochs > progress.epochs
"""
_INSERT = f"""
INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})
ON CONFLICT (arch, dataset, recipe, seed) DO UPDATE SET
    {', '.join(f'{c} = excluded.{c}' for c in COLUMNS[4:])}
WHERE results.status = 'failed' AND excluded.status = 'ok'
"""
_DESCRIPTIONS = """
CREATE TABLE IF NOT EXISTS descriptions (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    description TEXT NOT NULL
)
"""


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    row["curve"] = json.loads(row["curve"]) if row.get("curve") else []
    return row


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class ResultStore:
    """Finished trainings in one SQLite file (created with its folder if missing)."""

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self.busy_timeout = float(busy_timeout)
        if self.path.is_dir():
            raise UserError(f"result store {str(self.path)!r} is a folder; give a file path such as {str(self.path / 'results.sqlite')!r}")
        check_store(self.path, timeout=self.busy_timeout)  # read-only: a foreign or damaged file is refused unchanged
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=self.busy_timeout)
            wait_while_busy(self._prepare, self.path, "open it", self.busy_timeout)
        except sqlite3.DatabaseError as err:
            if self._conn is not None:
                self._conn.close()
            raise UserError(f"result store {str(self.path)!r} is not a usable SQLite file ({err}); give a new path") from None
        self._conn.row_factory = sqlite3.Row

    def _prepare(self) -> None:
        """WAL journal, full sync, the current schema (older files gain ``node``, ``curve``, ``descriptions``, ``progress``)."""
        conn = self._conn
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        with conn:
            if "results" not in tables:
                conn.execute(_SCHEMA)
            else:
                have = {r[1] for r in conn.execute("PRAGMA table_info(results)")}
                if "node" not in have:
                    conn.execute("ALTER TABLE results ADD COLUMN node TEXT NOT NULL DEFAULT ''")
                if "curve" not in have:
                    conn.execute("ALTER TABLE results ADD COLUMN curve TEXT NOT NULL DEFAULT ''")
            if "descriptions" not in tables:
                conn.execute(_DESCRIPTIONS)
            if "progress" not in tables:
                conn.execute(_PROGRESS)
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _wait(self, action: Any, doing: str) -> Any:
        """``action()`` waiting out another program's lock; a damaged file mid-run is one :class:`UserError`."""
        try:
            return wait_while_busy(action, self.path, doing, self.busy_timeout)
        except sqlite3.DatabaseError as err:  # not a lock: those are waited out
            raise UserError(f"result store {str(self.path)!r} failed to {doing} ({err}); check it with "
                            f"`sqlite3 {self.path} 'PRAGMA integrity_check'` or give a new path") from None

    def put(self, arch: str, dataset: str, recipe: str, seed: int, result: Mapping[str, Any],
            descriptions: Mapping[str, Any] | None = None) -> bool:
        """Record one finished training in its own committed transaction (waiting, with a warning,
        while another program holds the store's lock).

        ``result`` holds ``status`` ('ok'/'failed') and optionally ``val_acc``, ``test_acc``,
        ``params``, ``seconds``, ``reason``, ``finished_at`` (default: now, UTC), ``node`` (the Ray
        node that trained it; "" in this process). ``descriptions`` may say what the ``dataset``
        and ``recipe`` hashes stand for (``{"dataset": ..., "recipe": ...}``, JSON-able); the first
        description of a hash is kept.
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
            json.dumps(result["curve"]) if result.get("curve") else "",
        )
        described = [(h, kind, json.dumps(descriptions[kind], sort_keys=True))
                     for kind, h in (("dataset", row[1]), ("recipe", row[2])) if descriptions and kind in descriptions]

        def write() -> bool:
            with self._conn:
                done = self._conn.execute(_INSERT, row).rowcount > 0
                if done and status == "ok":  # a stopped training of the key is finished now
                    self._conn.execute("DELETE FROM progress WHERE arch = ? AND dataset = ? AND recipe = ? AND seed = ?", row[:4])
                self._conn.executemany("INSERT OR IGNORE INTO descriptions (hash, kind, description) VALUES (?, ?, ?)", described)
            return done

        written = self._wait(write, f"record the training of {arch}")
        if not written:
            log.info("%s seed %d on %s/%s already finished; kept the stored row", arch, seed, dataset[:12], recipe)
        return written

    def record(self, result: Mapping[str, Any], dataset: str) -> bool:
        """:meth:`put` a :func:`~nas_lightning.candidates.recipe.train_candidate` result (its arch, recipe key, seed)."""
        return self.put(result["arch"], dataset, result["recipe"], result["seed"], result)

    def get(self, arch: str, dataset: str, recipe: str, seed: int) -> dict[str, Any] | None:
        """The finished record of a key (``curve`` parsed: ``[val_acc, seconds]`` per epoch, ``[]``
        where not recorded), or None."""
        query = f"SELECT {', '.join(COLUMNS)} FROM results WHERE arch = ? AND dataset = ? AND recipe = ? AND seed = ?"
        key = (str(arch), str(dataset), str(recipe), int(seed))
        found = self._wait(lambda: self._conn.execute(query, key).fetchone(), "read it")
        return None if found is None else _parsed(dict(found))

    def save_progress(self, arch: str, dataset: str, recipe: str, seed: int, result: Mapping[str, Any]) -> None:
        """Keep a stopped training (its ``epochs``, ``curve``, ``seconds`` and ``snapshot``) so that it
        can be continued later, in its own committed transaction; a later stop replaces an earlier one."""
        row = (str(arch), str(dataset), str(recipe), int(seed), int(result["epochs"]), json.dumps(result["curve"]),
               float(result["seconds"]), bytes(result["snapshot"]), _now())
        self._wait(lambda: self._commit(_SAVE_PROGRESS, row), f"keep the stopped training of {arch}")

    def progress(self, arch: str, dataset: str, recipe: str, seed: int) -> dict[str, Any] | None:
        """A stopped training of a key not finished yet (``epochs``, ``curve``, ``seconds``, ``snapshot``), or None."""
        query = "SELECT epochs, curve, seconds, snapshot FROM progress WHERE arch = ? AND dataset = ? AND recipe = ? AND seed = ?"
        key = (str(arch), str(dataset), str(recipe), int(seed))
        found = self._wait(lambda: self._conn.execute(query, key).fetchone(), "read it")
        return None if found is None else {**dict(found), "curve": json.loads(found["curve"])}

    def _commit(self, sql: str, row: tuple[Any, ...]) -> None:
        with self._conn:
            self._conn.execute(sql, row)

    def description(self, key: str) -> dict[str, Any] | None:
        """What a ``dataset`` or ``recipe`` hash of this store stands for (``kind`` and its
        ``description``, parsed JSON), or None where no row written with a description uses it."""
        found = self._wait(lambda: self._conn.execute(
            "SELECT kind, description FROM descriptions WHERE hash = ?", (str(key),)).fetchone(), "read it")
        return None if found is None else {"kind": found["kind"], "description": json.loads(found["description"])}

    def descriptions(self) -> dict[str, dict[str, Any]]:
        """Every described hash: ``{hash: {"kind": ..., "description": ...}}``."""
        rows = self._wait(lambda: self._conn.execute("SELECT hash, kind, description FROM descriptions ORDER BY hash").fetchall(), "read it")
        return {r["hash"]: {"kind": r["kind"], "description": json.loads(r["description"])} for r in rows}

    def rows(self) -> list[dict[str, Any]]:
        """Every record, oldest first (``curve`` parsed)."""
        return [_parsed(dict(r)) for r in self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM results ORDER BY id")]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows())

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def write_csv(self, path: str | Path) -> int:
        """Export every record to a CSV file (header = :data:`COLUMNS`); returns the row count."""
        rows = [{**r, "curve": json.dumps(r["curve"]) if r["curve"] else ""} for r in self.rows()]
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

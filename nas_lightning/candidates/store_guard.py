"""What a result store is checked for before anything is written to it, and how it waits out a lock.

:func:`inspect_store` opens an existing file with SQLite's read-only mode (``mode=ro``) and refuses,
with its bytes unchanged, a file that is not a SQLite database, another application's database
(tables or columns a result store does not have), a store of a newer schema version, and a
damaged store (SQLite's ``quick_check``, rows sharing a key, or a one-row-per-key index that
disagrees with its table). :func:`check_store` adds the check that the file and its folder can be
written. :func:`wait_while_busy` retries an action on a store locked by another program, with a
warning each time the busy timeout passes, instead of failing.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Callable, TypeVar

from nas_lightning.errors import UserError
from nas_lightning.files import check_writable

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 3  # 2: the node a training ran on; 3: validation curves and stopped trainings (older files gain them when opened)
KEY = ("arch", "dataset", "recipe", "seed")
RESULTS_V1 = ("id", *KEY, "val_acc", "test_acc", "params", "seconds", "status", "reason", "finished_at")
RESULTS_V2 = (*RESULTS_V1, "node")
RESULTS_V3 = (*RESULTS_V2, "curve")
DESCRIPTIONS = ("hash", "kind", "description")
PROGRESS = (*KEY, "epochs", "curve", "seconds", "snapshot", "updated_at")
TABLES = {"results": (RESULTS_V1, RESULTS_V2, RESULTS_V3), "descriptions": (DESCRIPTIONS,), "progress": (PROGRESS,)}
_HEADER = b"SQLite format 3\x00"
_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


def is_busy(err: sqlite3.Error) -> bool:
    """Whether ``err`` says another connection holds a lock (rather than a damaged or foreign file)."""
    code = getattr(err, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in _BUSY) or any(w in str(err) for w in ("database is locked", "database is busy"))


def wait_while_busy(action: Callable[[], T], path: Path, doing: str, timeout: float) -> T:
    """``action()``, retried while another program holds the store's lock (each try waits up to
    ``timeout`` seconds, SQLite's busy timeout), with a warning after each wait."""
    start = time.monotonic()
    while True:
        try:
            return action()
        except sqlite3.OperationalError as err:
            if not is_busy(err):
                raise
            log.warning("result store %s is locked by another program (%.0f s so far); still waiting to %s: "
                        "close the program holding it, or press Ctrl-C (what is already stored is kept)",
                        path, time.monotonic() - start, doing)


def _problem(text: str) -> str:
    return " ".join(str(text).replace("*** in database main ***", "").split())[:200]


def _damaged(path: Path, problem: str) -> UserError:
    return UserError(f"result store {str(path)!r} is damaged ({_problem(problem)}); nothing was written to it: move it aside "
                     f"and give a new path (sqlite3's .recover command can salvage its rows into a new file)")


def _check(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of an open store, after the checks of :func:`inspect_store`."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    objects = conn.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'").fetchall()
    foreign = sorted(name for name, kind in objects if kind != "table" or name not in TABLES)
    columns = {name: tuple(r[1] for r in conn.execute(f"PRAGMA table_info({name})")) for name, kind in objects if name in TABLES}
    wrong = sorted(name for name, cols in columns.items() if cols not in TABLES[name])
    if foreign or wrong:
        what = f"tables {', '.join(foreign)}" if foreign else f"a {wrong[0]} table with columns {', '.join(columns[wrong[0]])}"
        raise UserError(f"{str(path)!r} is not a nas-lightning result store (it holds {what}); it was left unchanged: "
                        f"give a new path for the store")
    if version > SCHEMA_VERSION:
        raise UserError(f"result store {str(path)!r} has schema version {version}, newer than this version reads "
                        f"({SCHEMA_VERSION}); it was left unchanged: use the newer nas-lightning or a new path")
    if version < 0:
        raise UserError(f"{str(path)!r} has schema version {version}, not a nas-lightning result store's; give a new path")
    checked = [r[0] for r in conn.execute("PRAGMA quick_check")]
    if checked != ["ok"]:
        raise _damaged(path, checked[0])
    if "results" in columns:
        index = [r[1] for r in conn.execute("PRAGMA index_list(results)") if r[2]]
        unique = [i for i in index if tuple(r[2] for r in conn.execute(f'PRAGMA index_info("{i}")')) == KEY]
        if not unique:
            raise _damaged(path, "the index that keeps one row per key is missing")
        rows = conn.execute("SELECT COUNT(*) FROM results NOT INDEXED").fetchone()[0]
        keys = conn.execute(f"SELECT COUNT(*) FROM (SELECT DISTINCT {', '.join(KEY)} FROM results NOT INDEXED)").fetchone()[0]
        indexed = conn.execute(f"SELECT COUNT(*) FROM results INDEXED BY \"{unique[0]}\"").fetchone()[0]
        if keys != rows:
            raise _damaged(path, f"{rows - keys} rows repeat the key of another row")
        if indexed != rows:
            raise _damaged(path, f"its one-row-per-key index holds {indexed} rows, the table {rows}")
    return version


def inspect_store(path: str | Path, timeout: float = 30.0) -> int | None:
    """The schema version of the store at ``path`` (``None``: no file yet), checked read-only.

    Raises:
        UserError: for a file that is not SQLite, another application's database, a store of a
            newer schema version, or a damaged store (each refused with the file unchanged).
    """
    path = Path(path).expanduser()
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(len(_HEADER))
    except OSError as err:
        raise UserError(f"result store {str(path)!r} is unreadable ({err.strerror or err}); give a readable file or a new path") from None
    if head and head != _HEADER:
        raise UserError(f"result store {str(path)!r} is not a usable SQLite file (no SQLite header); give a new path")
    if not head:
        return None  # an empty file: SQLite makes a new database of it
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error as err:
        raise UserError(f"result store {str(path)!r} is not a usable SQLite file ({err}); give a new path") from None
    try:
        return wait_while_busy(lambda: _check(conn, path), path, "read it", timeout)
    except sqlite3.DatabaseError as err:
        raise _damaged(path, str(err)) from None
    finally:
        conn.close()


def check_store(path: str | Path, flag: str = "result store", timeout: float = 30.0) -> int | None:
    """:func:`inspect_store` after checking that the store's file (and its ``-wal``) can be written."""
    check_writable(path, flag)
    return inspect_store(path, timeout)

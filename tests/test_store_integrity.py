"""A result store never lies: a damaged, foreign or newer file is refused unchanged, a locked store
is waited for, old stores still open, and every hash is described beside it."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from nas_lightning.errors import UserError
from nas_lightning.candidates.store import ResultStore
from nas_lightning.candidates.store_guard import SCHEMA_VERSION, inspect_store

OK = {"status": "ok", "val_acc": 91.5, "test_acc": 90.25, "params": 0.5, "seconds": 3.2, "node": "host-a"}
ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~{}|"


def _filled(path: Path, rows: int = 30) -> Path:
    with ResultStore(path) as store:
        for i in range(rows):
            store.put(ARCH.format(i), "0123456789abcdef" * 4, "fedcba9876543210", 0, {**OK, "val_acc": 50.0 + i})
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_store_is_refused_and_never_written(tmp_path: Path) -> None:
    path = _filled(tmp_path / "r.sqlite")
    size = path.stat().st_size
    with open(path, "r+b") as f:  # the last 2 KiB zeroed, as a failing disk or a cut copy leaves it
        f.seek(size - 2048)
        f.write(b"\0" * 2048)
    before = _digest(path)
    with pytest.raises(UserError, match="is damaged") as err:
        ResultStore(path)
    assert "\n" not in str(err.value) and "new path" in str(err.value)
    assert _digest(path) == before


def test_a_store_without_its_one_row_per_key_rule_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    conn = sqlite3.connect(path)  # the store's columns, but no UNIQUE rule: two rows for one key
    conn.execute("""CREATE TABLE results (id INTEGER PRIMARY KEY, arch TEXT NOT NULL, dataset TEXT NOT NULL,
        recipe TEXT NOT NULL, seed INTEGER NOT NULL, val_acc REAL, test_acc REAL, params REAL, seconds REAL,
        status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', finished_at TEXT NOT NULL, node TEXT NOT NULL DEFAULT '')""")
    for acc in (80.0, 60.0):
        conn.execute("INSERT INTO results (arch, dataset, recipe, seed, val_acc, status, finished_at) "
                     "VALUES ('a', 'd', 'r', 0, ?, 'ok', 'then')", (acc,))
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(UserError, match="one row per key"):
        ResultStore(path)
    assert _digest(path) == before


def test_a_foreign_sqlite_file_is_refused_before_anything_changes(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    conn = sqlite3.connect(path)  # another application's database that happens to have a results table
    conn.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, player TEXT, score REAL)")
    conn.execute("INSERT INTO results (player, score) VALUES ('ann', 3.5)")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(UserError, match="not a nas-lightning result store") as err:
        ResultStore(path)
    assert "\n" not in str(err.value)
    assert _digest(path) == before  # journal mode and user_version untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite"]


def test_extra_tables_and_newer_versions_are_refused(tmp_path: Path) -> None:
    path = _filled(tmp_path / "r.sqlite", rows=1)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(UserError, match="schema version 9"):
        ResultStore(path)
    assert _digest(path) == before
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match="tables users"):
        ResultStore(other)


def test_a_version_1_store_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("""CREATE TABLE results (id INTEGER PRIMARY KEY, arch TEXT NOT NULL, dataset TEXT NOT NULL,
        recipe TEXT NOT NULL, seed INTEGER NOT NULL, val_acc REAL, test_acc REAL, params REAL, seconds REAL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed')), reason TEXT NOT NULL DEFAULT '',
        finished_at TEXT NOT NULL, UNIQUE (arch, dataset, recipe, seed))""")
    conn.execute("INSERT INTO results (arch, dataset, recipe, seed, val_acc, status, finished_at) "
                 "VALUES ('a', 'd', 'r', 0, 80.0, 'ok', 'then')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    assert inspect_store(path) == 1
    with ResultStore(path) as store:
        assert store.get("a", "d", "r", 0)["val_acc"] == 80.0 and store.get("a", "d", "r", 0)["node"] == ""
        assert store.put("b", "d", "r", 0, OK)
    assert inspect_store(path) == SCHEMA_VERSION == 3  # gained node, curve and the progress table


class _Released(logging.Handler):
    """Releases the other program's lock when the store says it is waiting for it."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self.unlock, self.messages = release, []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.unlock.set()


def test_a_locked_store_waits_and_keeps_the_training(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store = ResultStore(path, busy_timeout=0.05)
    locked, release = threading.Event(), threading.Event()

    def other_program() -> None:  # e.g. a database browser holding a write lock
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(timeout=60)
        conn.execute("COMMIT")
        conn.close()

    handler = _Released(release)
    logger = logging.getLogger("nas_lightning.candidates.store_guard")
    logger.addHandler(handler)
    thread = threading.Thread(target=other_program)
    thread.start()
    try:
        assert locked.wait(timeout=60)
        assert store.put("a", "d", "r", 0, OK)  # waits (warning), then writes once the lock is released
    finally:
        release.set()
        thread.join(timeout=60)
        logger.removeHandler(handler)
    assert handler.messages and "locked by another program" in handler.messages[0]
    assert store.get("a", "d", "r", 0)["val_acc"] == 91.5
    store.close()


def test_dataset_and_recipe_are_described_beside_their_hashes(tmp_path: Path) -> None:
    described = {"dataset": {"task": "train:digits", "summary": "digits: train 360"}, "recipe": {"v": 1, "lr": 0.05}}
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store.description("d") is None
        store.put("a", "d", "r", 0, OK, described)
        store.put("b", "d", "r", 0, OK, {"dataset": {"task": "another name"}})  # the first description is kept
        assert store.description("d") == {"kind": "dataset", "description": described["dataset"]}
        assert store.description("r") == {"kind": "recipe", "description": {"v": 1, "lr": 0.05}}
        assert set(store.descriptions()) == {"d", "r"}
    conn = sqlite3.connect(tmp_path / "r.sqlite")  # readable without this package too
    assert json.loads(conn.execute("SELECT description FROM descriptions WHERE hash = 'r'").fetchone()[0]) == {"v": 1, "lr": 0.05}


def test_a_store_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        ResultStore(blocker / "r.sqlite")
    assert blocker.read_text() == "x"

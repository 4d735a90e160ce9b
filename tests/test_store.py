"""The SQLite result store: one row per key, failures retried, nothing committed lost to kill -9."""

from __future__ import annotations

import csv
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nas_lightning.errors import UserError
from nas_lightning.candidates.store import COLUMNS, ResultStore

OK = {"status": "ok", "val_acc": 91.5, "test_acc": 90.25, "params": 0.5, "seconds": 3.2, "reason": ""}


def test_put_get_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "results.sqlite"
    with ResultStore(path) as store:
        assert store.get("a", "d", "r", 0) is None
        assert store.put("a", "d", "r", 0, OK)
        got = store.get("a", "d", "r", 0)
        assert got is not None and got["val_acc"] == 91.5 and got["status"] == "ok" and got["finished_at"]
        assert store.get("a", "d", "r", 1) is None and store.get("a", "d2", "r", 0) is None
        assert len(store) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_nothing_finished_is_recorded_twice(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    assert store.put("a", "d", "r", 0, OK)
    assert not store.put("a", "d", "r", 0, {**OK, "val_acc": 50.0})
    assert store.get("a", "d", "r", 0)["val_acc"] == 91.5
    with pytest.raises(sqlite3.IntegrityError):  # the constraint itself, not only the code path
        with store._conn:
            store._conn.execute(
                "INSERT INTO results (arch, dataset, recipe, seed, status, finished_at) VALUES ('a', 'd', 'r', 0, 'ok', 'now')"
            )
    assert len(store) == 1


def test_a_failure_is_replaced_by_a_later_success_only(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    failed = {"status": "failed", "reason": "out of memory: CUDA", "params": 1.5}
    assert store.put("a", "d", "r", 0, failed)
    assert not store.put("a", "d", "r", 0, {**failed, "reason": "again"})
    assert store.get("a", "d", "r", 0)["reason"] == "out of memory: CUDA"
    assert store.put("a", "d", "r", 0, OK)
    row = store.get("a", "d", "r", 0)
    assert row["status"] == "ok" and row["reason"] == "" and row["val_acc"] == 91.5
    assert not store.put("a", "d", "r", 0, failed)
    assert len(store) == 1


def test_record_a_training_result_and_export_csv(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite")
    result = {**OK, "arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "recipe": "abc", "seed": 3, "test_acc": None}
    assert store.record(result, "fp")
    assert store.get(result["arch"], "fp", "abc", 3)["test_acc"] is None
    store.put("b", "fp", "abc", 0, OK)
    assert store.write_csv(tmp_path / "out.csv") == 2
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and [r["arch"] for r in rows] == [result["arch"], "b"]


def test_bad_inputs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        ResultStore(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, not at all" * 100)
    with pytest.raises(UserError):
        ResultStore(junk)
    with pytest.raises(UserError):
        ResultStore(tmp_path / "r.sqlite").put("a", "d", "r", 0, {"status": "running"})


_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from nas_lightning.candidates.store import ResultStore
    store = ResultStore({path!r})
    i = 0
    while True:
        store.put(f"arch{{i}}", "data", "recipe", i % 3, {{"status": "ok", "val_acc": float(i), "seconds": 1.0}})
        print(i, flush=True)
        i += 1
    """
)


def test_kill_9_loses_nothing_committed(tmp_path: Path, repo_root: Path) -> None:
    path = tmp_path / "killed.sqlite"
    script = _WRITER.format(root=str(repo_root), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    reported = -1
    deadline = time.monotonic() + 60
    try:
        while reported < 200 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for line in proc.stdout.read().splitlines():  # lines printed before the kill, not read yet
            if line.strip().isdigit():
                reported = int(line)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert reported >= 200, "the writer did not get going"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with ResultStore(path) as store:
        rows = store.rows()
        archs = [r["arch"] for r in rows]
        assert len(archs) == len(set(archs))
        assert {f"arch{i}" for i in range(reported + 1)} <= set(archs)  # every reported commit survived
        assert len(rows) in (reported + 1, reported + 2)  # at most one commit not yet printed
        assert all(r["val_acc"] == float(r["arch"][4:]) for r in rows)
        assert not store.put("arch0", "data", "recipe", 0, OK)  # the reopened file still refuses duplicates
        assert store.put("arch-new", "data", "recipe", 0, OK)

"""Every path a search.py command writes is checked before any work: one line, exit 2, nothing written.

The store of a ``train:`` comparison is checked too: a damaged or foreign SQLite file is refused with
its bytes unchanged. Tests run as root in some places, where folder permissions stop nothing, so
unwritable paths are made by placing them under a regular file (and read-only folders are simulated
in-process).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from nas_lightning import files
from nas_lightning.errors import UserError
from nas_lightning.candidates.store import ResultStore
from tests.test_cli_errors import SEARCH, _check, _fork, forkserver, inputs  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # starts processes

TINY = ["--oracle.recipe.epochs", "1", "--oracle.recipe.max_train_images", "40", "--oracle.recipe.C", "2", "--oracle.recipe.batch_size", "20"]
TRAIN = ["compare", "--task", "train:digits", "--strategy", "random", "--budget", "2", "--seeds", "1", *TINY]


@pytest.fixture()
def blocker(tmp_path: Path) -> Path:
    """A regular file: nothing can be created under it, whoever runs the test."""
    path = tmp_path / "a_file"
    path.write_text("not a folder\n")
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(forkserver, args: list[str], tmp_path: Path, needle: str) -> None:
    cwd = tmp_path / "run"
    cwd.mkdir()
    code, err = _fork(forkserver, SEARCH, args, cwd)
    _check(code, err, cwd, needle)


@pytest.mark.parametrize("case", ["compare-table", "compare-train", "compare-train-store", "rank", "predict", "constrained"])
def test_an_output_path_under_a_file_is_refused_before_any_work(case: str, inputs: Path, blocker: Path,
                                                                forkserver, tmp_path: Path) -> None:
    table = ["--task", f"csv:{inputs}/good.csv"]
    args = {
        "compare-table": ["compare", *table, "--strategy", "random", "--budget", "3", "--seeds", "1", "--out", f"{blocker}/sub"],
        "compare-train": [*TRAIN, "--out", f"{blocker}/sub"],
        "compare-train-store": [*TRAIN, "--out", "out", "--oracle.store", f"{blocker}/trainings.sqlite"],
        "rank": ["rank", *table, "--ckpt", f"{inputs}/search.ckpt", "--seeds", "1", "--out", f"{blocker}/sub"],
        "predict": ["predict", *table, "--ckpt", f"{inputs}/search.ckpt", "--out", f"{blocker}/ranked.csv"],
        "constrained": ["constrained", "--accuracy", "nb201/cifar100/val_acc", "--latency", f"csv:{inputs}/good.csv",
                        "--limit", "20", "--predictor", "params", "--out", f"{blocker}/pick.csv"],
    }[case]
    _run(forkserver, args, tmp_path, "is a file, not a folder")
    assert blocker.read_text() == "not a folder\n"


def test_a_damaged_store_is_refused_by_compare_and_left_unchanged(forkserver, tmp_path: Path) -> None:
    store = tmp_path / "damaged.sqlite"
    with ResultStore(store) as s:
        for i in range(30):
            s.put(f"arch{i}", "d" * 64, "r" * 16, 0, {"status": "ok", "val_acc": float(i), "node": "host"})
    with open(store, "r+b") as f:
        f.seek(store.stat().st_size - 2048)
        f.write(b"\0" * 2048)
    before = _digest(store)
    _run(forkserver, [*TRAIN, "--out", "out", "--oracle.store", str(store)], tmp_path, "is damaged")
    assert _digest(store) == before


def test_a_foreign_sqlite_file_is_refused_by_compare_and_left_unchanged(forkserver, tmp_path: Path) -> None:
    store = tmp_path / "app.sqlite"
    conn = sqlite3.connect(store)
    conn.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, player TEXT, score REAL)")
    conn.commit()
    conn.close()
    before = _digest(store)
    _run(forkserver, [*TRAIN, "--out", "out", "--oracle.store", str(store)], tmp_path, "not a nas-lightning result store")
    assert _digest(store) == before


def test_a_read_only_folder_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    real = os.access
    monkeypatch.setattr(files.os, "access", lambda p, mode: False if Path(p) == folder else real(p, mode))
    with pytest.raises(UserError, match="cannot be written .*read-only"):
        files.check_writable(folder, "--out", folder=True)
    with pytest.raises(UserError, match="cannot be written"):
        files.check_writable(folder / "new" / "x.csv", "--out")
    with pytest.raises(UserError, match="cannot be written"):
        ResultStore(folder / "trainings.sqlite")
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_refused_by_compare(inputs: Path, forkserver, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    try:
        _run(forkserver, [*TRAIN, "--out", str(folder)], tmp_path, "cannot be written")
    finally:
        folder.chmod(0o755)

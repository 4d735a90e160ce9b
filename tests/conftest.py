"""Shared test fixtures.

Every test session gets its own table cache (``NAS_LIGHTNING_CACHE``) under pytest's temporary
directory, so tests never read or write the user's ``~/.cache/nas_lightning``. A tiny
``train.py`` run's settings live here once (:func:`tiny_run`); each test states only what it
changes.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

from nas_lightning.tasks.task import Task

REPO_ROOT = Path(__file__).resolve().parents[1]
DEVICE_DATA = REPO_ROOT / "data" / "nb201-device-latency"  # shipped with the project



# the smallest train.py run that still exercises everything: one training and one validation table,
# a few meta-steps of a narrow predictor, no progress output
TINY_TASKS: dict[str, object] = {"data.train_tasks": "[nb201/cifar10/val_acc]", "data.val_tasks": "[nb201/cifar100/train_time]"}
TINY_RUN: dict[str, object] = {
    **TINY_TASKS, "data.meta_batch": 2, "data.support": 3, "data.query": 16, "data.val_query": 40, "data.val_episodes": 2,
    "data.steps_per_epoch": 3, "model.hidden": 16, "model.context": 8,
    "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False,
}


def tiny_run(changes: dict[str, object] | None = None, tasks: bool = True) -> list[str]:
    """Command-line arguments of a tiny ``train.py`` run: :data:`TINY_RUN` with ``changes``
    (``tasks=False``: keep the config's own tasks, change only the sizes)."""
    base = TINY_RUN if tasks else {k: v for k, v in TINY_RUN.items() if k not in TINY_TASKS}
    settings = {**base, **(changes or {})}
    return [a for k, v in settings.items() for a in (f"--{k}", str(v).lower() if isinstance(v, bool) else str(v))]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (then restore): two runs compared for equality must
    reduce in the same order, whatever machine the suite runs on."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class GuardedTask(Task):
    """A task whose value tensors (``table``, ``seed_table``) can only be read where ``check`` allows:
    ``check(what)`` raises on a forbidden read. ``reads`` counts the architectures looked up."""

    @property
    def table(self) -> torch.Tensor:
        self._check("table")
        return self._guarded_table

    @table.setter
    def table(self, value: torch.Tensor) -> None:
        self._guarded_table = value

    @property
    def seed_table(self) -> torch.Tensor | None:
        self._check("seed_table")
        return self._guarded_seeds

    @seed_table.setter
    def seed_table(self, value: torch.Tensor | None) -> None:
        self._guarded_seeds = value

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        self.reads += len(torch.as_tensor(indices).reshape(-1))
        return super().lookup(indices)

    @classmethod
    def wrap(cls, t: Task, check: Callable[[str], None]) -> "GuardedTask":
        """``t`` behind ``check`` (its values, seeds, costs and space unchanged)."""
        out = cls.__new__(cls)
        out._check, out.reads = check, 0
        out.__init__(name=t.name, direction=t.direction, archs=t.archs, table=t.table, seed_table=t.seed_table,
                     cost=t.cost, report_only=t.report_only, space=t.space)
        out.__dict__["fingerprint"] = t.fingerprint  # the content hash, taken when the table was loaded
        return out


def descendants(root: int) -> list[int]:
    """Every process started, directly or not, by process ``root`` (read from ``/proc``)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        kids = [c for c, p in parents.items() if p == parent]
        found += kids
        frontier += kids
    return found


def kill_after_rows(proc: "subprocess.Popen", db: Path, rows: int, poll: float = 0.2, limit: float = 1800) -> None:
    """SIGKILL ``proc`` once the store ``db`` holds ``rows`` finished trainings (fails if it ends first)."""
    import signal
    import sqlite3
    import time

    deadline = time.monotonic() + limit  # only stops a hung run
    while True:
        assert proc.poll() is None, "the run ended before it was killed"
        assert time.monotonic() < deadline
        if db.is_file():
            with sqlite3.connect(db) as conn:
                try:
                    if conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] >= rows:
                        break
                except sqlite3.OperationalError:  # the file exists a moment before its table
                    pass
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def only_from(function: str, file_suffix: str) -> Callable[[str], None]:
    """A :class:`GuardedTask` check that allows a read only from within ``function`` of a file
    ending in ``file_suffix`` (anywhere up the call stack)."""

    def check(what: str) -> None:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == function and frame.f_code.co_filename.endswith(file_suffix):
                return
            frame = frame.f_back
        raise AssertionError(f"{what} read outside {function} ({file_suffix})")

    return check


@pytest.fixture(scope="session", autouse=True)
def nas_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh, session-wide table cache; the first load of a table builds it there."""
    path = tmp_path_factory.mktemp("nas_lightning_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAS_LIGHTNING_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def device_data_dir() -> Path:
    """The measured device latency tables shipped in ``data/nb201-device-latency``."""
    return DEVICE_DATA

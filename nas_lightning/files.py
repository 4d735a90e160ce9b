"""Output files, written atomically: a reader sees the old file or the whole new one, never half.

One helper for every file the project writes (tables' caches, results, benchmark sections);
JSON refuses NaN and infinities (strict JSON: they become ``null`` through :func:`finite`).
:func:`check_writable` refuses, before a command does any work, a path it could not write.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import torch

from nas_lightning.errors import UserError


@contextlib.contextmanager
def atomic(*paths: str | Path) -> Iterator[list[Path]]:
    """Temporary siblings of ``paths`` to write; on success each replaces its path, on failure
    none does and the temporaries are removed (so several files appear together or not at all)."""
    finals = [Path(p) for p in paths]
    temps = [p.parent / f".{p.name}.tmp{os.getpid()}" for p in finals]
    for p in finals:
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
        for tmp, final in zip(temps, finals):
            os.replace(tmp, final)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int = 1) -> str:
    """Strict JSON of ``obj`` (non-finite floats as ``null``)."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


def write_json(obj: Any, path: str | Path, indent: int = 1) -> Path:
    """Write ``obj`` as strict JSON to ``path``, atomically."""
    return write_text(json_text(obj, indent), path)


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path``, atomically."""
    with atomic(path) as (tmp,):
        tmp.write_text(text)
    return Path(path)


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path``, atomically."""
    with atomic(path) as (tmp,):
        torch.save(obj, tmp)
    return Path(path)


def check_writable(path: str | Path, flag: str, folder: bool = False) -> Path:
    """Refuse a path a command will write but could not: a file where a folder goes (or the other
    way round), a path under a file, or a folder this user may not write to. Creates nothing.

    Args:
        path: the file (or, with ``folder``, the folder) to be written; missing folders above it
            are created later, so the nearest existing one is checked.
        flag: the option that named it, for the message (e.g. ``--out``).
        folder: whether ``path`` is a folder.

    Raises:
        UserError: one line naming ``flag`` and what to give instead.
    """
    p = Path(path).expanduser()
    if folder and p.exists() and not p.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a file; give a folder (it is created if missing)")
    if not folder and p.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a folder; give a file name")
    probe = p if folder else p.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{flag} {str(path)!r} cannot be created: {str(probe)!r} is a file, not a folder; give a path in a folder")
    if not os.access(probe, os.W_OK | os.X_OK) or (not folder and p.exists() and not os.access(p, os.W_OK)):
        what = str(p) if not folder and p.exists() and not os.access(p, os.W_OK) else str(probe)
        raise UserError(f"{flag} {str(path)!r} cannot be written ({what!r} is read-only here); give a path you can write to")
    return p


def print_written(paths: list[tuple[str | Path, str]]) -> None:
    """Print ``wrote PATH  (what it holds)`` for each file or folder written, in order."""
    for path, what in paths:
        print(f"wrote {path}" + (f"  ({what})" if what else ""))

"""Output files, written atomically: a reader sees the old file or the whole new one, never half.

One helper for every file the project writes (tables' caches, results, benchmark sections);
JSON refuses NaN and infinities (strict JSON: they become ``null`` through :func:`finite`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import torch


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

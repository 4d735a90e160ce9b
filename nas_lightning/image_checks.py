"""Checks on image data a user is given, before any of it is decoded or trusted.

* the contents of a CIFAR python batch (keys, shapes, dtypes, label range).

Each failure is a :class:`~nas_lightning.errors.UserError` of one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nas_lightning.errors import UserError

CIFAR_PIXELS = 3 * 32 * 32


def check_cifar_batch(batch: Any, path: Path, label_key: str, num_classes: int) -> None:
    """Refuse a CIFAR batch that is not ``{'data': uint8 [N, 3072], label_key: N labels in range}``."""
    def bad(what: str) -> UserError:
        return UserError(f"CIFAR file {str(path)!r} is malformed ({what}); download the CIFAR python version again")

    if not isinstance(batch, dict):
        raise bad(f"a {type(batch).__name__}, not a dict")
    for key in ("data", label_key):
        if key not in batch:
            raise bad(f"no {key!r} entry")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        shape = f"{getattr(data, 'dtype', type(data).__name__)} {list(getattr(data, 'shape', []))}"
        raise bad(f"'data' is {shape}, not uint8 [N, {CIFAR_PIXELS}]")
    labels = batch[label_key]
    if not isinstance(labels, (list, np.ndarray)) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                             for v in labels):
        raise bad(f"{label_key!r} is not a list of integers")
    if len(labels) != len(data):
        raise bad(f"{len(labels)} labels for {len(data)} images")
    if len(labels) and not 0 <= min(labels) <= max(labels) < num_classes:
        raise bad(f"labels outside 0..{num_classes - 1}")


def check_cifar_meta(meta: Any, path: Path, names_key: str, num_classes: int) -> None:
    """Refuse a CIFAR meta file whose class names are not ``num_classes`` strings."""
    names = meta.get(names_key) if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or (names is not None and (
            not isinstance(names, list) or len(names) != num_classes or not all(isinstance(n, str) for n in names))):
        raise UserError(f"CIFAR file {str(path)!r} is malformed (no list of {num_classes} class names in {names_key!r}); "
                        "download the CIFAR python version again")

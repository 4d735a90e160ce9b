"""Checks on image data a user is given, before any of it is decoded or trusted.

* a pixel limit on every image, read from its header (a small file can claim a huge image: a
  decompression bomb);
* class folders that are links back into the image folder (or to it, or above it), which would
  make one class of every image, or count images twice;
* the contents of a CIFAR python batch (keys, shapes, dtypes, label range).

Each failure is a :class:`~nas_lightning.errors.UserError` of one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from nas_lightning.errors import UserError

# PIL's own default (Image.MAX_IMAGE_PIXELS, above which it warns of a decompression bomb); fixed
# here so a program that lifts PIL's limit does not lift this one. 89.5 million pixels: a
# 9459 x 9459 image, 268 MB decoded as RGB.
MAX_PIXELS = 89_478_485
CIFAR_PIXELS = 3 * 32 * 32


def check_pixels(path: Path, size: tuple[int, int]) -> None:
    """Refuse an image whose header claims more than :data:`MAX_PIXELS` pixels."""
    w, h = size
    if w * h > MAX_PIXELS:
        raise UserError(f"image {str(path)!r} is {w}x{h} ({w * h:,} pixels), over the limit of {MAX_PIXELS:,} "
                        "pixels (a decompression bomb, or a photo far larger than training needs); downscale it or remove it")


def bomb(path: Path, err: Exception) -> UserError:
    """The one-line error for an image PIL itself refuses as a decompression bomb (twice its limit)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    claims = f"{int(found.group(1)):,} pixels" if found else "more than twice that many pixels"
    return UserError(f"image {str(path)!r} claims {claims}, over the limit of {MAX_PIXELS:,} pixels "
                     "(a decompression bomb, or a photo far larger than training needs); downscale it or remove it")


def check_class_folder(folder: Path, root: Path) -> None:
    """Refuse a class folder that is a link to the image folder ``root``, to a folder above it,
    or to a folder inside it (its images would form a class of everything, or count twice)."""
    if not folder.is_symlink() or not folder.is_dir():
        return
    target, top = folder.resolve(), root.resolve()
    if target == top or target in top.parents:
        where = "the image folder itself" if target == top else "a folder above the image folder"
    elif top in target.parents:
        where = "a folder inside the image folder (its images would count twice)"
    else:
        return
    raise UserError(f"class folder {str(folder)!r} is a link to {where} ({str(target)!r}); "
                    "replace it with a folder holding only that class's images")


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

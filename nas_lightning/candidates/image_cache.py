"""Decoded images mapped from disk: an image folder is decoded once, image by image, into a file of
raw pixels under the cache folder (``~/.cache/nas_lightning/images``; ``NAS_LIGHTNING_CACHE`` moves
it), and trainings read the pixels they use from there (the page cache), so a folder larger than
memory still trains and a second run does not decode it again. The file is as large as the pixels
at the trained size (100,000 images at 64x64 RGB: 1.2 GB); it is named by the files' paths, sizes
and modification times, the colour mode and the size, so a changed folder is decoded anew.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from nas_lightning.errors import UserError
from nas_lightning.candidates.image_checks import bomb, check_pixels
from nas_lightning.tasks.embedded import cache_dir

IMAGE_CACHE_VERSION = 1


def _cache_file(files: list[Path], mode: str, size: tuple[int, int]) -> Path:
    """Where the decoded images of ``files`` are kept: named by the files' paths, sizes and times,
    the mode and the size, so a changed folder is decoded again."""
    h = hashlib.sha256(f"{IMAGE_CACHE_VERSION}|{mode}|{size}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return cache_dir() / "images" / f"{h.hexdigest()[:32]}.u8"


def read_images(files: list[Path], mode: str, size: tuple[int, int]) -> torch.Tensor:
    """Images as ``uint8 [N, C, H, W]`` in ``mode``, resized to ``size`` (w, h) where needed, mapped
    from a file of decoded pixels (decoded into it once, one image at a time): a training reads the
    images it uses from disk (the page cache), and a folder larger than memory still trains."""
    channels = 1 if mode == "L" else 3
    shape = (len(files), channels, size[1], size[0])
    path = _cache_file(files, mode, size)
    if not path.is_file() or path.stat().st_size != int(np.prod(shape)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
            _decode(files, mode, size, out)
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return torch.from_numpy(np.memmap(path, dtype=np.uint8, mode="c", shape=shape))  # copy-on-write: nothing writes back


def _decode(files: list[Path], mode: str, size: tuple[int, int], out: np.ndarray) -> None:
    """Decode ``files`` one by one into ``out`` ``[N, C, H, W]``."""
    from PIL import Image

    channels = out.shape[1]
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                check_pixels(f, im.size)  # again: the file may have changed since it was probed
                im = im.convert(mode)
                if im.size != size:
                    im = im.resize(size, Image.Resampling.BILINEAR)
                out[i] = np.asarray(im, dtype=np.uint8).reshape(size[1], size[0], channels).transpose(2, 0, 1)
        except Image.DecompressionBombError as err:
            raise bomb(f, err) from None
        except OSError as err:
            raise UserError(f"cannot decode image {str(f)!r} ({err}); remove or replace the file") from None

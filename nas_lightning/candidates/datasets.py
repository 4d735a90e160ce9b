"""Image datasets for training candidates: (train, val, test) splits of uint8 tensors in memory.

Every dataset is an :class:`ImageData`: ``uint8`` images ``[N, C, H, W]`` and ``int64`` labels
per split, held in memory (small data sets; a large image folder needs the memory to match).
Names understood by :func:`nas_lightning.candidates.sources.load_dataset`:

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, no download), split by a seeded
  stratified fraction into train / val / test;
* ``folder``: a user's images laid out like torchvision's ``ImageFolder`` (see
  :func:`nas_lightning.candidates.image_files.load_image_folder`);
* ``cifar10``, ``cifar100``, ``fashion-mnist``: the files torchvision downloads, read from a local
  root (never downloaded here); the official test set is the test split and the training set is
  split into train / val.

:attr:`ImageData.fingerprint` is a sha256 over the split tensors and class names, so results can
be keyed by the data they were trained on.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from nas_lightning.errors import UserError

log = logging.getLogger(__name__)

_FINGERPRINT_VERSION = b"nas-lightning-imagedata-v1"


@dataclass(frozen=True)
class Split:
    """One split: ``uint8`` images ``[N, C, H, W]`` and ``int64`` labels ``[N]``; unpacks as ``x, y``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.images, self.labels))


@dataclass(frozen=True)
class ImageData:
    """A dataset as trained on: train / val / (optional) test splits and the class names."""

    name: str
    train: Split
    val: Split
    test: Split | None
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        shape = None
        for part, split in self.splits().items():
            x, y = split
            if x.dtype != torch.uint8 or x.dim() != 4 or y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name} {part}: want uint8 [N,C,H,W] images and int64 [N] labels")
            if shape is not None and x.shape[1:] != shape:
                raise ValueError(f"{self.name} {part}: image shape {tuple(x.shape[1:])} differs from {tuple(shape)}")
            shape = x.shape[1:]
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name} {part}: labels outside [0, {len(self.classes)})")

    def splits(self) -> dict[str, Split]:
        """The non-empty splits by name."""
        out = {"train": self.train, "val": self.val}
        if self.test is not None:
            out["test"] = self.test
        return out

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 (hex) over class names and every split's shapes and bytes; the name is not part of it."""
        h = hashlib.sha256(_FINGERPRINT_VERSION)
        h.update("\x00".join(self.classes).encode())
        for part, (x, y) in self.splits().items():
            h.update(f"|{part}:{tuple(x.shape)}|".encode())
            for i in range(0, len(x), 4096):  # in chunks: a folder's images may be mapped from disk, not in memory
                h.update(x[i:i + 4096].contiguous().numpy())
            h.update(y.contiguous().numpy().astype("<i8").tobytes())
        return h.hexdigest()

    def describe(self) -> str:
        """One line: name, sizes, shape, classes."""
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits().items())
        c, (hh, ww) = self.in_channels, self.image_size
        return f"{self.name}: {sizes}; {c}x{hh}x{ww}; {self.num_classes} classes"


def check_fraction(name: str, value: float, low_open: bool = True) -> float:
    """A split fraction in ``(0, 1)`` (or ``[0, 1)`` when ``low_open`` is false).

    Raises:
        UserError: for a value out of range or not a number.
    """
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}={value!r} is not a number; give a fraction between 0 and 1") from None
    ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
    if not ok:
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise UserError(f"{name}={value} is out of range; give a fraction in {interval}")
    return value


def stratified_split(labels: torch.Tensor, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """Indices ``[rest, part_1, part_2, ...]``: per class, ``round(n * fraction)`` images go to each part.

    Every class keeps at least one image in ``rest``; indices are sorted within each part.
    """
    g = torch.Generator().manual_seed(int(seed))
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        start = 0
        for k, f in enumerate(fractions, start=1):
            take = min(int(round(len(idx) * f)), len(idx) - 1 - start)
            parts[k].append(idx[start : start + max(take, 0)])
            start += max(take, 0)
        parts[0].append(idx[start:])
    return [torch.sort(torch.cat(p)).values if p else torch.empty(0, dtype=torch.long) for p in parts]


def _subset(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> Split:
    return Split(x[idx].contiguous(), y[idx].contiguous())


def split_parts(name: str, labels: torch.Tensor, val_fraction: float, test_fraction: float, split_seed: int) -> list[torch.Tensor]:
    """Indices of the train, val and (``test_fraction`` > 0) test parts of a seeded stratified split.

    Raises:
        UserError: for fractions out of range, fewer than two classes, or an empty val split.
    """
    val_fraction = check_fraction("val_fraction", val_fraction)
    test_fraction = check_fraction("test_fraction", test_fraction, low_open=False)
    if val_fraction + test_fraction >= 1.0:
        raise UserError(f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training images; keep the sum below 1")
    if len(torch.unique(labels)) < 2:
        raise UserError(f"{name} has {len(torch.unique(labels))} class(es); a classifier needs images of at least two classes")
    fractions = (val_fraction, test_fraction) if test_fraction > 0 else (val_fraction,)
    parts = stratified_split(labels, fractions, split_seed)
    if len(parts[1]) == 0:
        raise UserError(f"{name}: val_fraction={val_fraction} puts no image in the val split; raise it or add images")
    return parts


def from_arrays(
    name: str,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    classes: tuple[str, ...],
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    test: Split | None = None,
) -> ImageData:
    """An :class:`ImageData` from one pool of images, split by seeded stratified fractions.

    ``test_fraction`` 0 leaves no test split (unless ``test`` is given).

    Raises:
        UserError: for fractions out of range, fewer than two classes, or an empty val split.
    """
    x, y = torch.as_tensor(images), torch.as_tensor(labels).long()
    parts = split_parts(name, y, val_fraction, test_fraction, split_seed)
    test_split = _subset(x, y, parts[2]) if test_fraction > 0 else test
    return ImageData(name, _subset(x, y, parts[0]), _subset(x, y, parts[1]), test_split, tuple(classes))


def load_digits_data(val_fraction: float = 0.6, test_fraction: float = 0.2, split_seed: int = 0) -> ImageData:
    """scikit-learn's bundled 8x8 digits as 1-channel uint8 images (values 0..16 scaled to 0..255).

    The default split is 20 % train / 60 % val / 20 % test: the CPU recipe trains on a small
    subset anyway, and a large val split keeps the seed-to-seed noise of ``val_acc`` low
    (its floor is about ``sqrt(acc * (1 - acc) / n_val)``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UserError("the digits dataset needs scikit-learn; run: pip install scikit-learn") from None
    bunch = load_digits()
    images = torch.from_numpy(np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    classes = tuple(str(c) for c in bunch.target_names)
    return from_arrays("digits", images, labels, classes, val_fraction, test_fraction, split_seed)

"""Training recipes: how one candidate is trained (:func:`~nas_lightning.candidates.train.train_candidate` trains it).

Presets (:data:`PRESETS`):

* ``cpu`` (the default): a narrow, deep network (C=4, N=3, so the cells outweigh the fixed
  stem and reduction blocks) on at most 360 training images (digits' whole train split) for 20
  epochs without augmentation, sized so one candidate trains on digits in about 10 s or less on
  one CPU core while connected cells spread well beyond the seed noise
  (``scripts/measure_digits_recipe.py``). These networks are overhead-bound: on a busy 2-core
  machine ``torch.set_num_threads(1)`` is faster than two threads;
* ``folder`` (the default for ``train:imagefolder=...`` while no recipe field is changed): C=8, N=1,
  every image resized to 32x32, random crops (padding 4), 20 epochs on a class-balanced subset of
  at most 2,000 training images: a user's photos are larger and more varied than digits, so a wider
  first stage and augmentation, a fixed small resolution (mixed sizes train as they are), and enough
  images per class to rank cells; about a minute or two per candidate on one CPU core
  (``docs/own-images.md`` has the measured times; raise ``max_train_images`` or the resolution on a GPU);
* ``200ep``: NAS-Bench-201's training schedule: C=16, N=5, 200 epochs, SGD lr 0.1, Nesterov momentum 0.9,
  weight decay 5e-4, cosine to 0, batch 256, random crop (padding 4) and flip;
* ``12ep``: the same with NAS-Bench-201's 12-epoch schedule.

Accuracies are percentages (0-100), as in the NB201 tables; ``val_acc`` is measured after the
last epoch. ``max_train_images`` keeps a class-balanced subset of the training split, drawn with
``subset_seed`` (fixed per recipe, so seeds differ only in training randomness).

A recipe's :attr:`Recipe.key` names the experiment in a result store: every field but the seed,
and also the CPU thread count (``threads``) and ``deterministic`` wherever they differ from their
defaults (1 and true), since either changes the accuracies a training reaches (sums in another
order, other kernels). The defaults leave the key as it always was, so existing stores stay valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from nas_lightning.errors import UserError
from nas_lightning.candidates.candidate import AUGMENTS

log = logging.getLogger(__name__)

SCHEDULES: tuple[str, ...] = ("cosine", "constant")
_KEY_VERSION = 1
_NOT_IN_KEY = ("seed", "deterministic", "threads")  # a seed is its own key; the other two join it off their defaults


@dataclass(frozen=True)
class Recipe:
    """How one candidate is trained; every field is checked (out of range: :class:`UserError`).

    Args:
        C: channels of the network's first stage (NB201's C; the second and third stages have 2C and 4C).
        N: cells per stage (NB201's N; 0: no cell, only the stem and the two reduction blocks).
        epochs: training epochs of each candidate.
        batch_size: training images per step.
        lr: SGD learning rate at the start of the schedule.
        momentum: SGD momentum, in [0, 1).
        weight_decay: SGD weight decay.
        nesterov: Nesterov momentum (needs momentum > 0).
        schedule: learning-rate schedule: cosine (to 0 at the last epoch) or constant.
        resolution: side in pixels the images are resized to (null: the data's own size).
        augment: training-time augmentation: none, crop, flip or crop_flip.
        crop_padding: padding in pixels of the random crop.
        max_train_images: train on a class-balanced subset of this many images (null: the whole training split).
        subset_seed: seed of that subset's draw (fixed per recipe: seeds then differ only in training).
        seed: seed of the training (initialisation, batch order, augmentation).
        deterministic: use deterministic algorithms (same seed, same accuracy).
        threads: CPU threads of one training (part of the store key where not 1: other thread counts give
            other accuracies); on Ray, one per CPU a training asks for.
    """

    C: int = 8
    N: int = 1
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "cosine"
    resolution: int | None = None  # None: the data's own size
    augment: str = "none"
    crop_padding: int = 4
    max_train_images: int | None = None
    subset_seed: int = 0
    seed: int = 0
    deterministic: bool = True
    threads: int = 1  # CPU threads of one training (torch.set_num_threads); on Ray, one per CPU it asks for

    def __post_init__(self) -> None:
        def bad(field: str, want: str) -> UserError:
            return UserError(f"recipe {field}={getattr(self, field)!r} is out of range; give {want}")

        for field, low in (("C", 1), ("N", 0), ("epochs", 1), ("batch_size", 1), ("crop_padding", 0), ("subset_seed", 0), ("seed", 0),
                           ("threads", 1)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise bad(field, f"an integer >= {low}")
        for field in ("lr", "momentum", "weight_decay"):
            if not isinstance(getattr(self, field), (int, float)) or not math.isfinite(getattr(self, field)):
                raise bad(field, "a finite number")
        if self.lr <= 0:
            raise bad("lr", "a learning rate > 0")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "a momentum in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "a weight decay >= 0")
        if self.nesterov and self.momentum == 0:
            raise UserError("recipe nesterov=True needs momentum > 0; set momentum or nesterov=False")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTS:
            raise bad("augment", f"one of {', '.join(AUGMENTS)}")
        if self.resolution is not None and (not isinstance(self.resolution, int) or isinstance(self.resolution, bool) or not 4 <= self.resolution <= 1024):
            raise bad("resolution", "None (the data's size) or an integer in [4, 1024]")
        if self.max_train_images is not None and (not isinstance(self.max_train_images, int) or self.max_train_images < 2):
            raise bad("max_train_images", "None (all) or an integer >= 2")

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` (unknown field: :class:`UserError`)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise UserError(f"unknown recipe field {unknown[0]!r}; choose from {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    @property
    def description(self) -> dict[str, Any]:
        """What :attr:`key` hashes: every field but the seed; ``threads`` and ``deterministic`` only
        when they differ from 1 and true (absent: those defaults)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_IN_KEY}
        if self.threads != 1:
            fields["threads"] = self.threads
        if not self.deterministic:
            fields["deterministic"] = False
        return {"v": _KEY_VERSION, **fields}

    @property
    def key(self) -> str:
        """A stable hash (16 hex digits) of :attr:`description`: the experiment, not its seed."""
        return hashlib.sha256(json.dumps(self.description, sort_keys=True).encode()).hexdigest()[:16]


PAPER_SCHEDULE = Recipe(C=16, N=5, epochs=200, batch_size=256, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True,
               schedule="cosine", augment="crop_flip", crop_padding=4)
PRESETS: dict[str, Recipe] = {
    "cpu": Recipe(C=4, N=3, epochs=20, batch_size=32, lr=0.05, max_train_images=360),
    "folder": Recipe(C=8, N=1, epochs=20, batch_size=64, lr=0.05, resolution=32, augment="crop", crop_padding=4,
                     max_train_images=2000),
    "200ep": PAPER_SCHEDULE,
    "12ep": PAPER_SCHEDULE.replace(epochs=12),
}


def get_recipe(name: str = "cpu", **changes: Any) -> Recipe:
    """A preset by name, with optional field changes."""
    if name not in PRESETS:
        raise UserError(f"unknown recipe preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**changes) if changes else PRESETS[name]


def balanced_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``n`` images, classes as even as their sizes allow, drawn with ``seed``."""
    if n >= len(labels):
        return torch.arange(len(labels))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    seen: dict[int, int] = {}
    rank = torch.empty(len(perm), dtype=torch.long)
    for i, c in enumerate(labels[perm].tolist()):
        rank[i] = seen.get(c, 0)
        seen[c] = rank[i].item() + 1
    order = torch.sort(rank, stable=True).indices
    return torch.sort(perm[order[:n]]).values

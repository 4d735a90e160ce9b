"""Training recipes and :func:`train_candidate`: train one cell's NB201 network, report its accuracy.

Presets (:data:`PRESETS`):

* ``cpu`` (the default): a narrow, deep network (C=4, N=3, so the cells outweigh the fixed
  stem and reduction blocks) on at most 360 training images (digits' whole train split) for 20
  epochs without augmentation, sized so one candidate trains on digits in about 10 s or less on
  one CPU core while connected cells spread well beyond the seed noise
  (``scripts/measure_digits_recipe.py``). These networks are overhead-bound: on a busy 2-core
  machine ``torch.set_num_threads(1)`` is faster than two threads;
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

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from nas_lightning.errors import UserError
from nas_lightning.candidates.candidate import (
    AUGMENTS,
    CandidateModule,
    NonFiniteLossError,
    channel_stats,
    make_loader,
    steps_per_epoch,
)
from nas_lightning.candidates.datasets import ImageData
from nas_lightning.candidates.network import arch_label, arch_string, build_network, count_params, validate_ops

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


@contextlib.contextmanager
def _quiet_and_deterministic(deterministic: bool, seed: int, threads: int = 1) -> Iterator[None]:
    """Seed torch's global RNG inside a forked RNG state; deterministic algorithms; ``threads`` CPU
    threads; Lightning's chatter off (everything restored on exit)."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        if deterministic:
            if devices:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(does not have many workers|number of training batches|validation_step|deterministic|LeafSpec|tensorboardX).*")
            torch.manual_seed(seed)
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.set_num_threads(previous_threads)


def _candidate_logger(ops: tuple[str, ...], data: ImageData, recipe: Recipe, log_dir: str | Path) -> Any:
    """The TensorBoard logger of one training, ``log_dir/<recipe key>/<arch label>/seed<seed>``, its
    hyperparameters (architecture, dataset, recipe, seed) already set, so ``hparams.yaml`` holds them."""
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(str(log_dir), name=f"{recipe.key}/{arch_label(ops)}", version=f"seed{recipe.seed}",
                               default_hp_metric=False)
    recipe_fields = {f"recipe/{k}": v for k, v in dataclasses.asdict(recipe).items() if k != "seed"}
    logger.log_hyperparams({"arch": arch_string(ops), "dataset": data.describe(), "dataset_fingerprint": data.fingerprint[:16],
                            "seed": recipe.seed, "recipe/key": recipe.key, **recipe_fields})
    return logger


def _is_oom(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in text or "can't allocate memory" in text


def train_candidate(
    ops: tuple[str, ...],
    data: ImageData,
    recipe: Recipe | None = None,
    log_dir: str | Path | None = None,
    accelerator: str = "auto",
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train the NB201 network of ``ops`` on ``data`` with ``recipe`` (default: the ``cpu`` preset).

    Returns a dict: ``arch`` (NB201 string), ``seed``, ``recipe`` (its key), ``val_acc`` and
    ``test_acc`` (percent; ``test_acc`` None without a test split), ``params`` (millions),
    ``seconds`` (wall time), ``status`` (``ok`` or ``failed``) and ``reason`` ("" when ok).
    A NaN/infinite loss or running out of memory gives ``status="failed"``, not an exception.
    TensorBoard curves (loss, accuracy, val accuracy per epoch) go under ``log_dir`` when given,
    as ``log_dir/<recipe key>/<arch label>/seed<seed>`` (:func:`arch_label`), with the architecture,
    dataset, recipe and seed as hyperparameters and the final ``val_acc`` as their metric
    (``hp/val_acc``); ``callbacks`` are passed to the Trainer.

    Raises:
        UserError: for a malformed cell or a training subset smaller than the number of classes.
    """
    import lightning as L

    recipe = recipe or PRESETS["cpu"]
    ops = validate_ops(ops)
    start = time.perf_counter()
    x, y = data.train
    if recipe.max_train_images is not None:
        if recipe.max_train_images < data.num_classes:
            raise UserError(f"recipe max_train_images={recipe.max_train_images} is below the {data.num_classes} classes; give at least one image per class")
        keep = balanced_subset(y, recipe.max_train_images, recipe.subset_seed)
        x, y = x[keep], y[keep]
    result: dict[str, Any] = {"arch": arch_string(ops), "seed": recipe.seed, "recipe": recipe.key, "val_acc": None, "test_acc": None}
    with _quiet_and_deterministic(recipe.deterministic, recipe.seed, recipe.threads):
        mean, std = channel_stats(x)
        net = build_network(ops, C=recipe.C, N=recipe.N, num_classes=data.num_classes, in_channels=data.in_channels)
        result["params"] = count_params(net)
        module = CandidateModule(
            net, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov,
            schedule=recipe.schedule, total_steps=recipe.epochs * steps_per_epoch(len(y), recipe.batch_size),
            mean=mean, std=std, resolution=recipe.resolution, augment=recipe.augment, crop_padding=recipe.crop_padding,
            seed=recipe.seed,
        )
        logger: Any = False if log_dir is None else _candidate_logger(ops, data, recipe, log_dir)
        eval_batch = max(recipe.batch_size, 512)
        val_loader = make_loader(*data.val, eval_batch, None)
        trainer = L.Trainer(
            accelerator=accelerator, devices=1, max_epochs=recipe.epochs, logger=logger, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=callbacks,
            benchmark=not recipe.deterministic, log_every_n_steps=max(1, min(50, steps_per_epoch(len(y), recipe.batch_size))),
        )
        try:
            trainer.fit(module, make_loader(x, y, recipe.batch_size, recipe.seed), val_loader if logger else None)
            result["val_acc"] = float(trainer.validate(module, val_loader, verbose=False)[0]["val_acc"])
            if data.test is not None:
                result["test_acc"] = float(trainer.test(module, make_loader(*data.test, eval_batch, None), verbose=False)[0]["test_acc"])
            result.update(status="ok", reason="")
            if logger:  # the hyperparameters with their outcome, for TensorBoard's HPARAMS view
                logger.log_hyperparams(logger.hparams, metrics={"hp/val_acc": result["val_acc"]})
                logger.finalize("success")
        except NonFiniteLossError as err:
            result.update(status="failed", reason=str(err))
        except (RuntimeError, MemoryError) as err:
            if not _is_oom(err):
                raise
            result.update(status="failed", reason=f"out of memory: {str(err).splitlines()[0][:200]}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    result["seconds"] = time.perf_counter() - start
    val = "-" if result["val_acc"] is None else f"{result['val_acc']:.2f} %"
    log.info("%s seed %d: %s, val %s (%.1f s)", result["arch"], recipe.seed, result["status"], val, result["seconds"])
    return result

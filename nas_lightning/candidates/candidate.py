"""The Lightning side of training one candidate: the module, batch preparation and data loaders.

Batches travel as ``uint8`` images; on the device they are scaled to ``[0, 1]``, resized to the
recipe resolution, augmented (random crop with zero padding, horizontal flip) with numbers drawn
from a seeded CPU generator, and normalised by the training split's channel mean and std.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

AUGMENTS: tuple[str, ...] = ("none", "crop", "crop_flip", "flip")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class TensorBatches(Dataset):
    """A map dataset over in-memory tensors that hands out whole batches (no per-item collation)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(idx, dtype=torch.long)
        return self.images[index], self.labels[index]


def _as_batch(batch: Any) -> Any:
    return batch


def make_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle_seed: int | None) -> DataLoader:
    """Batches of ``(uint8 images, labels)``; shuffled by a seeded generator when ``shuffle_seed`` is set.

    A trailing training batch of one image is dropped (batch norm cannot train on it).
    """
    n = int(labels.shape[0])
    shuffle = shuffle_seed is not None
    gen = torch.Generator().manual_seed(shuffle_seed) if shuffle else None
    drop_last = shuffle and n % batch_size == 1 and n > 1
    return DataLoader(
        TensorBatches(images, labels), batch_size=batch_size, shuffle=shuffle, generator=gen,
        drop_last=drop_last, collate_fn=_as_batch, num_workers=0,
    )


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``n`` images (matching :func:`make_loader`)."""
    steps = math.ceil(n / batch_size)
    return steps - 1 if n % batch_size == 1 and n > 1 else steps


CHUNKED_STATS = 1 << 26  # above this many values, channel statistics are accumulated in chunks


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``uint8`` images in ``[0, 1]`` units (std floored at 1e-3).

    Up to :data:`CHUNKED_STATS` values in one float32 pass (as always: the same statistics, so the same
    trainings, as stores made earlier); above it in chunks of images with float64 sums, so a large
    image folder mapped from disk is never copied whole into memory as floats."""
    if images.numel() <= CHUNKED_STATS:
        x = images.float().div_(255.0).transpose(0, 1).flatten(1)
        return x.mean(1), x.std(1).clamp_min(1e-3)
    c = images.shape[1]
    total, sq, n = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    step = max(1, CHUNKED_STATS // max(1, images[0].numel()))
    for i in range(0, len(images), step):
        x = images[i:i + step].double().div_(255.0).transpose(0, 1).flatten(1)
        total += x.sum(1)
        sq += x.square().sum(1)
        n += x.shape[1]
    mean = total / n
    var = (sq - n * mean.square()) / max(n - 1, 1)
    return mean.float(), var.clamp_min(0).sqrt().float().clamp_min(1e-3)


def augment(x: torch.Tensor, kind: str, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding ``padding``) and/or horizontal flip per image; randomness from ``gen`` (CPU)."""
    b, c, h, w = x.shape
    if kind in ("crop", "crop_flip") and padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=gen).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=gen).to(x.device)
        xp = F.pad(x, (padding, padding, padding, padding))
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
        x = xp[torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if kind in ("flip", "crop_flip"):
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


class CandidateModule(L.LightningModule):
    """Trains one network with SGD (optionally Nesterov) and a per-step cosine (or constant) schedule."""

    def __init__(
        self,
        net: nn.Module,
        *,
        lr: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool,
        schedule: str,
        total_steps: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        resolution: int | None,
        augment: str,
        crop_padding: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.net = net
        self.opt = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        self.schedule, self.total_steps = schedule, max(1, total_steps)
        self.register_buffer("mean", mean.view(1, -1, 1, 1).float(), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1).float(), persistent=False)
        self.resolution, self.augment_kind, self.crop_padding = resolution, augment, crop_padding
        self.aug_gen = torch.Generator().manual_seed(seed + 1)
        self._counts: dict[str, list[int]] = {}
        self.curve: list[list[float]] = []  # [val_acc, cumulative seconds] after each training epoch
        self._clock, self._resume = (time.perf_counter(), 0.0), None

    def start_clock(self, curve: list[list[float]]) -> None:
        """Start timing now, after the epochs of ``curve`` (an earlier part of the same training)."""
        self.curve = [list(p) for p in curve]
        self._clock = (time.perf_counter(), self.curve[-1][1] if self.curve else 0.0)

    def seconds(self) -> float:
        """Seconds of training so far, earlier parts included."""
        return self._clock[1] + time.perf_counter() - self._clock[0]

    def resume_from(self, state: dict[str, Any]) -> None:
        """Continue a stopped training: its weights and augmentation generator now, its optimizer
        and schedule when fitting starts."""
        self.net.load_state_dict(state["net"])
        self.aug_gen.set_state(state["aug_gen"])
        self._resume = (state["optimizer"], state["scheduler"])

    def on_train_start(self) -> None:
        if self._resume is not None:
            optimizer, scheduler = self._resume
            self.trainer.optimizers[0].load_state_dict(optimizer)
            if scheduler is not None:
                self.trainer.lr_scheduler_configs[0].scheduler.load_state_dict(scheduler)
            self._resume = None

    def prepare(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        """``uint8`` images to normalised floats at the recipe resolution, augmented when training."""
        x = images.float().div_(255.0)
        if self.resolution is not None and tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        if train and self.augment_kind != "none":
            x = augment(x, self.augment_kind, self.crop_padding, self.aug_gen)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(images, train=False))

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.net(self.prepare(images, train=True))
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}")
        acc = (logits.argmax(1) == labels).float().mean()
        self.log_dict({"train_loss": loss, "train_acc": acc * 100}, on_step=True, on_epoch=True, batch_size=len(labels))
        return loss

    def _count(self, stage: str, batch: Sequence[torch.Tensor]) -> None:
        images, labels = batch
        correct = int((self(images).argmax(1) == labels).sum())
        tally = self._counts.setdefault(stage, [0, 0])
        tally[0] += correct
        tally[1] += len(labels)

    def _finish(self, stage: str) -> None:
        correct, total = self._counts.pop(stage, [0, 0])
        acc = float(torch.tensor(100.0 * correct / max(total, 1), dtype=torch.float32))  # as logged (float32)
        if stage == "val" and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.curve.append([acc, self.seconds()])
        self.log(f"{stage}_acc", acc, on_epoch=True)

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._count("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._count("test", batch)

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.net.parameters(), **self.opt)
        if self.schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.total_steps, eta_min=0.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

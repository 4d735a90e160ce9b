"""How many NB201 trainings per hour does this machine do? (meant for a GPU; ``--tiny`` runs on CPU).

Trains a few cells with the ``nb201`` recipe (C=16, N=5, batch 256, SGD + cosine, crop + flip)
on CIFAR-10-sized synthetic data (random 32x32x3 uint8 images, 10 classes; 50k train / 10k val
by default) for a shortened schedule of ``--epochs`` epochs, times every epoch, and extrapolates:

    time(E epochs) = fixed cost (build, first-epoch warm-up, evaluation) + E x steady epoch time

to NB201's 12- and 200-epoch schedules, printed as trainings per hour on one device. The first
cell is the largest (every edge ``nor_conv_3x3``); the others are drawn with ``--seed``.
Determinism is off (cuDNN autotuning on), as a throughput run would have it.

    python -m scripts.gpu_trainings_per_hour              # on a GPU, well under 10 minutes
    python -m scripts.gpu_trainings_per_hour --tiny       # a quick CPU check of the script
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from typing import Any


from nas_lightning.errors import UserError  # noqa: E402  (light: arguments are checked before torch loads)


def epoch_timer() -> Any:
    """A Lightning callback recording the wall seconds of every training epoch (CUDA synchronised)."""
    import lightning as L
    import torch

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        @staticmethod
        def _sync() -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self._sync()
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self._sync()
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def synthetic_cifar(n_train: int, n_val: int, seed: int, size: int = 32) -> Any:
    """Random uint8 images ``[n, 3, size, size]`` with random labels in 10 classes (an ``ImageData``)."""
    import torch

    from nas_lightning.candidates.datasets import ImageData, Split

    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        return Split(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g))

    return ImageData("synthetic-cifar10", split(n_train), split(n_val), None, tuple(str(c) for c in range(10)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a seconds-long CPU run: few images, a small network")
    p.add_argument("--candidates", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="shortened schedule per candidate (>= 2)")
    p.add_argument("--train-images", type=int, default=50_000)
    p.add_argument("--val-images", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.epochs < 2 or args.candidates < 1:
        raise UserError("--epochs must be >= 2 (the first epoch is warm-up) and --candidates >= 1")
    import lightning as L
    import torch

    from nas_lightning.candidates.network import EDGES, OPS, is_connected
    from nas_lightning.candidates.recipe import get_recipe
    from nas_lightning.candidates.train import train_candidate

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = get_recipe("200ep", epochs=args.epochs, deterministic=False, seed=args.seed)
    if args.tiny:
        args.train_images, args.val_images, args.candidates = 64, 32, min(args.candidates, 2)
        recipe = recipe.replace(C=4, N=1, batch_size=32, epochs=2)
    logging.getLogger("nas_lightning").setLevel(logging.WARNING)
    data = synthetic_cifar(args.train_images, args.val_images, args.seed)
    rng = random.Random(args.seed)
    cells = [("nor_conv_3x3",) * 6]
    while len(cells) < args.candidates:
        ops = tuple(rng.choice(OPS) for _ in EDGES)
        if is_connected(ops) and ops not in cells:
            cells.append(ops)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.accelerator != "cpu" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {device}; torch {torch.__version__}; lightning {L.__version__}")
    print(f"data: {data.describe()}; recipe C={recipe.C} N={recipe.N} batch {recipe.batch_size}, {recipe.epochs} epochs per candidate")
    fixed, epoch_s = [], []
    for ops in cells:
        timer = epoch_timer()
        r = train_candidate(ops, data, recipe, accelerator=args.accelerator, callbacks=[timer])
        if r["status"] != "ok":
            print(f"{r['arch']}: {r['status']} ({r['reason']})")
            continue
        steady = statistics.fmean(timer.seconds[1:])
        fixed.append(max(0.0, r["seconds"] - steady * len(timer.seconds)))
        epoch_s.append(steady)
        print(f"{r['arch']}: {r['params']:.3f} M params, {r['seconds']:.1f} s total, epochs "
              f"{' '.join(f'{s:.2f}' for s in timer.seconds)} s, steady {steady:.2f} s/epoch, fixed {fixed[-1]:.1f} s")
    if not epoch_s:
        print("no candidate finished")
        return 1
    mean_fixed, mean_epoch = statistics.fmean(fixed), statistics.fmean(epoch_s)
    for epochs in (12, 200):
        hours = (mean_fixed + epochs * mean_epoch) / 3600
        print(f"{epochs:3d}-epoch schedule: {hours * 60:.1f} min per training -> {1 / hours:.1f} trainings per hour "
              f"(mean over {len(epoch_s)} cells; {args.train_images} train / {args.val_images} val images)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

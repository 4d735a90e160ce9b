"""The training-time comparison on a GPU: CIFAR-10 from a local root, NAS-Bench-201's 12-epoch recipe.

Runs ``search.py compare`` on ``train:cifar10=ROOT`` with ``configs/nb201_recipe_search.yaml``'s
recipe shortened to 12 epochs (NAS-Bench-201's 12-epoch schedule), a budget in epochs, and side by
side: Ray Tune's ASHA with random search (``tune-asha``), our ASHA with the meta-learned prior
(``asha-meta``) and random search with full trainings (``random``), ``--workers`` trainings at once
sharing the GPUs (``--oracle.ray.trial_gpus`` = GPUs / workers). CIFAR-10 is read from ``ROOT``
(``ROOT/cifar-10-batches-py``, the python version); nothing is downloaded.

    python -m scripts.gpu_fidelity --root data/cifar10 --ckpt runs/default/checkpoints/last.ckpt
    python -m scripts.gpu_fidelity --root data/cifar10 --ckpt CKPT --budget 720 --seeds 3 --workers 4 --out out/gpu_fidelity

Without a CUDA device it says so and exits with status 2 (``--allow-cpu`` runs anyway: slow).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.gpu_fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="folder holding cifar-10-batches-py")
    p.add_argument("--ckpt", required=True, help="a predictor checkpoint from train.py (for asha-meta)")
    p.add_argument("--budget", type=int, default=360, help="epochs of training per search (default 360: 30 full 12-epoch trainings)")
    p.add_argument("--seeds", type=int, default=3, help="searches per strategy (default 3)")
    p.add_argument("--workers", type=int, default=4, help="trainings at once (default 4)")
    p.add_argument("--strategies", default="tune-asha,asha-meta,random", help="comma-separated (default tune-asha,asha-meta,random)")
    p.add_argument("--out", default="out/gpu_fidelity", help="results.json, best_vs_compute.png and the store (default out/gpu_fidelity)")
    p.add_argument("--allow-cpu", action="store_true", help="run without a GPU (slow; for checking the script)")
    args = p.parse_args(argv)
    import torch

    gpus = torch.cuda.device_count()
    if not gpus and not args.allow_cpu:
        print("no CUDA device here: run this on a machine with a GPU (or pass --allow-cpu)", file=sys.stderr)
        return 2
    if not (Path(args.root) / "cifar-10-batches-py").is_dir():
        print(f"no cifar-10-batches-py under {args.root}: give --root the folder that holds CIFAR-10's python version", file=sys.stderr)
        return 2
    from nas_lightning.commands import main as search_main
    from nas_lightning.errors import UserError

    command = ["compare", "--task", f"train:cifar10={args.root}", "--config", str(REPO / "configs" / "nb201_recipe_search.yaml"),
               "--oracle.recipe.epochs", "12", "--strategy", args.strategies, "--budget_epochs", str(args.budget),
               "--seeds", str(args.seeds), "--ckpt", args.ckpt, "--oracle.ray.workers", str(args.workers),
               "--oracle.ray.trial_gpus", f"{max(gpus, 1) / args.workers:g}" if gpus else "0", "--asha.grace", "1",
               "--asha.eta", "3", "--out", args.out]
    print("python search.py " + " ".join(command))
    try:
        return search_main(command)
    except UserError as err:
        print(err, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Seconds per candidate of the ``folder`` recipe on one CPU core, on a synthetic image folder.

Writes ``--images`` random RGB PNGs of ``--side`` pixels in 10 class folders (a temporary folder),
loads it as ``train:imagefolder`` does (20 % held out for validation, resized to the recipe's 32x32)
and trains three cells with the ``folder`` preset on one thread: the largest (every edge a 3x3
convolution), a middle one and a small one. The time depends on the number of images and the
resolution, not on what the images show.

    python -m scripts.measure_folder_recipe                  # 2,500 images: the 2,000-image cap
    python -m scripts.measure_folder_recipe --images 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

CELLS = {
    "largest": ("nor_conv_3x3",) * 6,
    "middle": ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3", "skip_connect"),
    "small": ("skip_connect", "none", "nor_conv_1x1", "none", "none", "skip_connect"),
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m scripts.measure_folder_recipe", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2500, help="images in the folder (default 2500)")
    p.add_argument("--side", type=int, default=48, help="side of each image in pixels (default 48)")
    args = p.parse_args(argv)
    import numpy as np
    import torch
    from PIL import Image

    from nas_lightning.candidates.recipe import PRESETS
    from nas_lightning.candidates.sources import load_dataset
    from nas_lightning.candidates.train import train_candidate

    torch.set_num_threads(1)
    recipe = PRESETS["folder"]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.images):
            folder = Path(tmp) / f"class{i % 10}"
            folder.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (args.side, args.side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        start = time.perf_counter()
        data = load_dataset("folder", tmp, image_size=recipe.resolution)
        print(f"{data.describe()}; read in {time.perf_counter() - start:.1f} s; recipe folder ({recipe.key})")
        for name, ops in CELLS.items():
            r = train_candidate(ops, data, recipe, accelerator="cpu")
            print(f"{name:8s} {r['params']:.3f} M parameters: {r['seconds']:.1f} s for {recipe.epochs} epochs "
                  f"on {min(len(data.train), recipe.max_train_images)} training images")


if __name__ == "__main__":
    main()

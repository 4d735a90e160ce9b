"""Datasets by name: the built-in digits, a user's image folder, CIFAR-10/100 and Fashion-MNIST files."""

from __future__ import annotations

from pathlib import Path

from nas_lightning.errors import UserError
from nas_lightning.candidates import image_files
from nas_lightning.candidates.datasets import ImageData, Split, from_arrays, load_digits_data
from nas_lightning.tasks.spec import DATASET_NAMES, TrainingSpec

DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # where a user's datasets go by default


def load_dataset(
    name: str = "digits",
    root: str | Path | None = None,
    *,
    val_fraction: float | None = None,
    test_fraction: float | None = None,
    image_size: int | None = None,
    split_seed: int = 0,
) -> ImageData:
    """Load a dataset by name (see :data:`DATASET_NAMES`); ``root`` is needed by all but ``digits``.

    ``val_fraction`` defaults to 0.6 for digits (see :func:`load_digits_data`) and 0.2 otherwise;
    ``test_fraction`` (default 0.2 for digits, 0 for a single image folder) applies only where no
    test split exists; ``image_size`` resizes a folder's images to ``image_size`` squared.

    Raises:
        UserError: for an unknown name, a missing root, bad fractions or bad files.
    """
    key = name.strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}.get(key, key)
    if key not in DATASET_NAMES:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if key == "digits":
        return load_digits_data(0.6 if val_fraction is None else val_fraction, 0.2 if test_fraction is None else test_fraction, split_seed)
    val_fraction = 0.2 if val_fraction is None else val_fraction
    if root is None or not str(root).strip():
        raise UserError(f"dataset {key!r} needs a root folder; pass root=PATH (where its files lie)")
    if key == "folder":
        return image_files.load_image_folder(root, val_fraction, test_fraction or 0.0, image_size, split_seed)
    if test_fraction:
        raise UserError(f"{key} has an official test set; drop test_fraction={test_fraction}")
    if image_size is not None:
        raise UserError(f"{key} images have a fixed size; drop image_size (set the recipe's resolution instead)")
    if key == "fashion-mnist":
        (x, y), test, classes = image_files.read_fashion_mnist(root)
    else:
        (x, y), test, classes = image_files.read_cifar(root, 10 if key == "cifar10" else 100)
    return from_arrays(key, x, y, classes, val_fraction, 0.0, split_seed, test=Split(*test))


def load_spec_data(spec: TrainingSpec, image_size: int | None = None) -> ImageData:
    """The dataset a ``train:`` spec names (one-line :class:`UserError` for missing or bad files).
    Without a root, a dataset's files are looked for in the project's ``data/<dataset>`` folder."""
    root = spec.root
    if root is None and spec.dataset != "digits":
        root = str(DATA_DIR / ("images" if spec.dataset == "folder" else spec.dataset))
        if not Path(root).exists():
            raise UserError(f"{spec} needs its files: put them under {root} (see data/README.md) "
                            f"or give {spec}=PATH")
    return load_dataset(spec.dataset, root, image_size=image_size)

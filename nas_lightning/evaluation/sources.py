"""Datasets by name: the built-in digits, a user's image folder, CIFAR-10/100 and Fashion-MNIST files."""

from __future__ import annotations

from pathlib import Path

from nas_lightning.errors import UserError
from nas_lightning.evaluation import image_files
from nas_lightning.evaluation.datasets import ImageData, Split, from_arrays, load_digits_data

DATASET_NAMES: tuple[str, ...] = ("digits", "folder", "cifar10", "cifar100", "fashion-mnist")


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

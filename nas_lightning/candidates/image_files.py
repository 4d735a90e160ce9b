"""Images from disk without torchvision: image folders (PIL), CIFAR and Fashion-MNIST files.

The project's CPU torch build has no working torchvision wheel, so these readers follow
torchvision's on-disk layouts themselves:

* an ``ImageFolder`` tree: one subfolder per class (sorted names are the classes), images found
  recursively, extensions as torchvision's; either ``root/train`` and ``root/val`` (and optionally
  ``root/test``) each holding class folders, or class folders directly under ``root``, split by a
  seeded stratified fraction. Folders whose names start with ``.`` are skipped.
* CIFAR: ``root/cifar-10-batches-py`` or ``root/cifar-100-python`` (the python pickles);
* Fashion-MNIST: ``root/FashionMNIST/raw/*-ubyte`` (optionally ``.gz``).

Image folders: grayscale images (modes ``1``, ``L``, ``LA``) give 1-channel data when every image
is grayscale; otherwise every image is converted to RGB (gray replicated, alpha dropped). 16-bit
and float images are refused. Mixed sizes are refused unless ``image_size`` is given, which
resizes every image to ``image_size`` x ``image_size`` (bilinear; the aspect ratio is not kept).
An image whose header claims more than :data:`~nas_lightning.candidates.image_checks.MAX_PIXELS` pixels is
refused before it is decoded; a class folder that is a link to the image folder, above it or into
it is refused. CIFAR batches are unpickled with nothing but containers and numpy arrays allowed.

An image folder is decoded once into a file of raw pixels and mapped from there
(:mod:`~nas_lightning.candidates.image_cache`), so it is never held in memory whole.
"""

from __future__ import annotations

import gzip
import logging
import pickle
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from nas_lightning.errors import UserError
from nas_lightning.candidates.datasets import ImageData, Split, check_fraction, split_parts
from nas_lightning.candidates.image_checks import bomb, check_cifar_batch, check_cifar_meta, check_class_folder, check_pixels
from nas_lightning.safe_load import RefusedGlobal, cifar_globals, restricted_pickle_load
from nas_lightning.candidates.image_cache import read_images

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GRAY_MODES = frozenset({"1", "L", "LA"})
COLOR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
_LAYOUT_HINT = "one subfolder per class, or train/ and val/ subfolders each holding class folders"


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMG_EXTENSIONS and p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)
    )


def _scan_classes(folder: Path, root: Path) -> dict[str, list[Path]]:
    """Class name -> image files of one class-folder tree (``root``: the whole image folder)."""
    if not folder.is_dir():
        raise UserError(f"image folder {str(folder)!r} does not exist; give a folder with {_LAYOUT_HINT}")
    for d in folder.iterdir():
        if not d.name.startswith("."):
            check_class_folder(d, root)
    found = {d.name: _images_under(d) for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    empty = [name for name, files in found.items() if not files]
    if not any(found.values()):
        exts = ", ".join(IMG_EXTENSIONS)
        raise UserError(f"image folder {str(folder)!r} holds no images ({exts}) in class subfolders; give a folder with {_LAYOUT_HINT}")
    if empty:
        raise UserError(f"class folder {str(folder / empty[0])!r} holds no images; add images or remove the folder")
    if len(found) < 2:
        raise UserError(f"image folder {str(folder)!r} has one class ({next(iter(found))!r}); a classifier needs at least two class folders")
    return found


def _probe(files: list[Path]) -> tuple[str, Counter]:
    """Target mode (``L`` or ``RGB``) and the size counts, from image headers only."""
    from PIL import Image, UnidentifiedImageError

    sizes: Counter = Counter()
    gray = True
    for f in files:
        try:
            with warnings.catch_warnings():  # over the limit is refused below, in one line
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    mode, size = im.mode, im.size
        except Image.DecompressionBombError as err:
            raise bomb(f, err) from None
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"cannot read image {str(f)!r} ({type(err).__name__}); remove or replace the file") from None
        check_pixels(f, size)
        if mode not in GRAY_MODES and mode not in COLOR_MODES:
            raise UserError(f"image {str(f)!r} has mode {mode!r} (16-bit or float); save it as 8-bit grayscale or RGB")
        gray = gray and mode in GRAY_MODES
        sizes[size] += 1
    return ("L" if gray else "RGB"), sizes


def _flatten(tree: dict[str, list[Path]], classes: tuple[str, ...]) -> tuple[list[Path], torch.Tensor]:
    files, labels = [], []
    for c, name in enumerate(classes):
        files += tree.get(name, [])
        labels += [c] * len(tree.get(name, []))
    return files, torch.tensor(labels, dtype=torch.long)


def load_image_folder(
    root: str | Path,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    image_size: int | None = None,
    split_seed: int = 0,
):
    """An ``ImageFolder`` tree as :class:`~nas_lightning.candidates.datasets.ImageData` (see module doc).

    With ``train/`` and ``val/`` subfolders the fractions are not used; otherwise the class
    folders under ``root`` are split (``test_fraction`` 0: no test split).

    Raises:
        UserError: for a missing or empty folder, one class, a val class unknown to train,
            unreadable images, 16-bit/float images, mixed sizes without ``image_size``, bad fractions.
    """
    root = Path(root).expanduser()
    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool) or not 1 <= image_size <= 4096):
        raise UserError(f"image_size={image_size!r} is invalid; give a side length in pixels between 1 and 4096")
    split_layout = (root / "train").is_dir() and (root / "val").is_dir()
    if split_layout:
        trees = {part: _scan_classes(root / part, root) for part in ("train", "val", "test") if (root / part).is_dir()}
        classes = tuple(trees["train"])
        for part, tree in trees.items():
            extra = sorted(set(tree) - set(classes))
            if extra:
                raise UserError(f"{part}/ has class {extra[0]!r} that train/ lacks; give train/ a folder {extra[0]!r} or remove it from {part}/")
    else:
        check_fraction("val_fraction", val_fraction)
        trees = {"all": _scan_classes(root, root)}
        classes = tuple(trees["all"])
    flat = {part: _flatten(tree, classes) for part, tree in trees.items()}
    all_files = [f for files, _ in flat.values() for f in files]
    mode, sizes = _probe(all_files)
    if image_size is not None:
        size = (image_size, image_size)
    elif len(sizes) > 1:
        (a, _), (b, _) = sizes.most_common(2)
        raise UserError(
            f"images under {str(root)!r} have mixed sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...); set the recipe's resolution N (--recipe.resolution, or --data.recipe.resolution for train.py) to resize all to NxN"
        )
    else:
        size = next(iter(sizes))
    name = f"folder:{root.name}"
    if not split_layout:  # split first, then decode in split order: each split is a slice of one mapped file
        files, labels = flat.pop("all")
        parts = split_parts(name, labels, val_fraction, test_fraction, split_seed)
        flat = {part: ([files[i] for i in idx.tolist()], labels[idx]) for part, idx in zip(("train", "val", "test"), parts)}
    log.info("reading %d images from %s as %s %dx%d", len(all_files), root, mode, *size)
    images = read_images([f for files, _ in flat.values() for f in files], mode, size)
    data, start = {}, 0
    for part, (files, labels) in flat.items():
        data[part] = Split(images[start:start + len(files)], labels)
        start += len(files)
    return ImageData(name, data["train"], data["val"], data.get("test"), classes)


def _first_dir(root: Path, names: tuple[str, ...], marker: str) -> Path | None:
    for cand in [root / n for n in names] + [root]:
        if (cand / marker).is_file() or (cand / f"{marker}.gz").is_file():
            return cand
    return None


def _unpickle(path: Path) -> dict:
    """A CIFAR python batch, built with nothing but containers, strings, numbers and numpy arrays
    (:func:`~nas_lightning.safe_load.cifar_globals`): anything else is refused before it is built."""
    with open(path, "rb") as f:
        try:
            return restricted_pickle_load(f, cifar_globals(), encoding="latin1")
        except RefusedGlobal as err:
            raise UserError(f"CIFAR file {str(path)!r} holds {err.name}, which CIFAR batches do not; refused "
                            "(reading it could run code); download the CIFAR python version again") from None


def read_cifar(root: str | Path, num_classes: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor], tuple[str, ...]]:
    """CIFAR-10/100 python pickles under ``root``: ``(train x, y), (test x, y), classes``.

    Raises:
        UserError: when the files are missing or unreadable.
    """
    root = Path(root).expanduser()
    folder_name, train_files, test_file, meta_file, label_key, names_key = (
        ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta", "labels", "label_names")
        if num_classes == 10
        else ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names")
    )
    folder = _first_dir(root, (folder_name,), test_file)
    if folder is None or not all((folder / f).is_file() for f in train_files):
        raise UserError(
            f"CIFAR-{num_classes} files not found under {str(root)!r}; put the {folder_name}/ folder there "
            f"(unpacked cifar-{num_classes}-python.tar.gz, as torchvision downloads it)"
        )
    try:
        parts = [_unpickle(folder / f) for f in train_files]
        test = _unpickle(folder / test_file)
        meta = _unpickle(folder / meta_file) if (folder / meta_file).is_file() else {}
    except UserError:
        raise
    except (OSError, EOFError, MemoryError, pickle.UnpicklingError, LookupError, ValueError, TypeError, AttributeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"CIFAR-{num_classes} files under {str(folder)!r} are unreadable ({first}); download them again") from None
    for name, batch in zip(train_files + [test_file], parts + [test]):
        check_cifar_batch(batch, folder / name, label_key, num_classes)
    check_cifar_meta(meta, folder / meta_file, names_key, num_classes)

    def arrays(batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
        y = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
        return x, y

    classes = tuple(meta.get(names_key, [str(i) for i in range(num_classes)]))
    tx, ty = arrays([test])
    return arrays(parts), (torch.from_numpy(tx), torch.from_numpy(ty)), classes


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    head = int.from_bytes(raw[:4], "big")
    if head != magic:
        raise UserError(f"{str(path)!r} is not an IDX file (magic {head}, want {magic}); download it again")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_fashion_mnist(root: str | Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor], tuple[str, ...]]:
    """Fashion-MNIST IDX files under ``root``: ``(train x, y), (test x, y), classes``.

    Raises:
        UserError: when the files are missing or malformed.
    """
    root = Path(root).expanduser()
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    folder = _first_dir(root, ("FashionMNIST/raw", "FashionMNIST", "raw"), names[2])
    paths = []
    for n in names:
        p = None if folder is None else next((c for c in (folder / n, folder / f"{n}.gz") if c.is_file()), None)
        if p is None:
            raise UserError(f"Fashion-MNIST files not found under {str(root)!r}; put FashionMNIST/raw/{n} (and the other three IDX files) there, as torchvision downloads them")
        paths.append(p)
    xs, ys, tx, ty = (_read_idx(p, m) for p, m in zip(paths, (2051, 2049, 2051, 2049)))
    if len(xs) != len(ys) or len(tx) != len(ty):
        raise UserError(f"Fashion-MNIST files under {str(folder)!r} disagree on image and label counts; download them again")
    train = (xs[:, None].copy(), ys.astype(np.int64))
    test = (torch.from_numpy(tx[:, None].copy()), torch.from_numpy(ty.astype(np.int64)))
    return train, test, FASHION_CLASSES

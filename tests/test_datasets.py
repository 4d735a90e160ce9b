"""Datasets for training candidates: digits, image folders, CIFAR / Fashion-MNIST files, fingerprints.

Every image folder and data file is made here in ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas_lightning.errors import UserError
from nas_lightning.candidates.datasets import ImageData, Split, from_arrays, load_digits_data, stratified_split
from nas_lightning.candidates.sources import load_dataset


def _img(path: Path, color=(255, 0, 0), size=(12, 12), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode != "L" else color[0]).save(path)


def _folder(root: Path, classes=("cat", "dog", "eel"), per_class=5, **kw) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            _img(root / name / f"{i}.png", color=(40 * c, 10 * i, 0), **kw)
    return root


def _one_line_user_error(call) -> str:
    with pytest.raises(UserError) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_digits_splits_are_stratified_and_deterministic() -> None:
    d = load_digits_data()
    assert (len(d.train), len(d.val), len(d.test)) == (360, 1078, 359)
    assert d.in_channels == 1 and d.image_size == (8, 8) and d.num_classes == 10
    assert d.train.images.dtype == torch.uint8 and int(d.train.images.max()) == 255
    for split in d.splits().values():
        assert set(split.labels.tolist()) == set(range(10))
    all_x = torch.cat([s.images for s in d.splits().values()]).flatten(1)
    assert len(torch.unique(all_x, dim=0)) > 1700  # the splits don't repeat images
    assert load_digits_data().fingerprint == d.fingerprint
    assert load_digits_data(split_seed=1).fingerprint != d.fingerprint
    assert load_dataset("digits").fingerprint == d.fingerprint


def test_fingerprint_sees_pixels_and_ignores_the_name() -> None:
    d = load_digits_data()
    renamed = ImageData("other", d.train, d.val, d.test, d.classes)
    assert renamed.fingerprint == d.fingerprint
    x = d.train.images.clone()
    x[0, 0, 0, 0] ^= 1
    changed = ImageData(d.name, Split(x, d.train.labels), d.val, d.test, d.classes)
    assert changed.fingerprint != d.fingerprint


def test_stratified_split_keeps_every_class_in_train() -> None:
    labels = torch.tensor([0] * 10 + [1] * 3 + [2])
    rest, val, test = stratified_split(labels, (0.3, 0.3), seed=0)
    assert sorted(torch.cat([rest, val, test]).tolist()) == list(range(14))
    assert set(labels[rest].tolist()) == {0, 1, 2}
    assert labels[val].tolist().count(0) == 3
    assert torch.equal(stratified_split(labels, (0.3, 0.3), seed=0)[1], val)


def test_image_folder_split_by_fraction(tmp_path: Path) -> None:
    d = load_dataset("folder", _folder(tmp_path / "imgs"), val_fraction=0.4, test_fraction=0.2)
    assert d.classes == ("cat", "dog", "eel")
    assert (len(d.train), len(d.val), len(d.test)) == (6, 6, 3)
    assert d.in_channels == 3 and d.image_size == (12, 12)
    x = torch.cat([d.train.images, d.val.images, d.test.images])
    y = torch.cat([d.train.labels, d.val.labels, d.test.labels])
    assert torch.equal(x[:, 0, 0, 0].long(), 40 * y)  # red channel encodes the class
    assert load_dataset("folder", tmp_path / "imgs").test is None  # no test fraction: no test split


def test_image_folder_train_val_layout(tmp_path: Path) -> None:
    _folder(tmp_path / "train", per_class=4)
    _folder(tmp_path / "val", classes=("cat", "eel"), per_class=2)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    d = load_dataset("folder", tmp_path)
    assert (len(d.train), len(d.val), d.test) == (12, 4, None)
    assert sorted(d.val.labels.tolist()) == [0, 0, 2, 2]


def test_grayscale_stays_one_channel_and_mixed_modes_become_rgb(tmp_path: Path) -> None:
    gray = _folder(tmp_path / "gray", mode="L")
    assert load_dataset("folder", gray).in_channels == 1
    mixed = _folder(tmp_path / "mixed", mode="L")
    _img(mixed / "cat" / "color.png", color=(0, 200, 0))
    d = load_dataset("folder", mixed)
    assert d.in_channels == 3
    x = torch.cat([d.train.images, d.val.images])
    assert any(torch.equal(img[:, 0, 0], torch.tensor([0, 200, 0], dtype=torch.uint8)) for img in x)


def test_mixed_sizes_are_refused_unless_resized(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    _img(root / "dog" / "big.png", size=(40, 30))
    msg = _one_line_user_error(lambda: load_dataset("folder", root))
    assert "resolution" in msg and "mixed sizes" in msg
    d = load_dataset("folder", root, image_size=16)
    assert d.image_size == (16, 16) and len(d.train) + len(d.val) == 16


def test_cifar_files_are_read_without_torchvision(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, n in [(f"data_batch_{i}", 10) for i in range(1, 6)] + [("test_batch", 7)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    d = load_dataset("cifar10", tmp_path, val_fraction=0.2)
    assert (len(d.train), len(d.val), len(d.test)) == (40, 10, 7)
    assert d.image_size == (32, 32) and d.classes[3] == "c3"
    assert load_dataset("CIFAR-10", folder).fingerprint == d.fingerprint  # the inner folder works too


def test_cifar100_and_fashion_mnist_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    for name, n in (("train", 300), ("test", 5)):
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": [i % 100 for i in range(n)]}
        (c100 / name).write_bytes(pickle.dumps(batch))
    d = load_dataset("cifar100", tmp_path, val_fraction=1 / 3)
    assert (len(d.train), len(d.val), len(d.test), d.num_classes) == (200, 100, 5, 100)

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 6)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        head_x = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28))
        head_y = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head_x + x.tobytes()))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(head_y + y.tobytes())
    f = load_dataset("fashion-mnist", tmp_path, val_fraction=0.5)
    assert (len(f.train), len(f.val), len(f.test), f.in_channels, f.image_size) == (10, 10, 6, 1, (28, 28))


def test_bad_image_folders_are_one_line_user_errors(tmp_path: Path) -> None:
    assert "does not exist" in _one_line_user_error(lambda: load_dataset("folder", tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    assert "no images" in _one_line_user_error(lambda: load_dataset("folder", tmp_path / "empty"))
    (tmp_path / "junk" / "cat").mkdir(parents=True)
    (tmp_path / "junk" / "cat" / "notes.txt").write_text("x")
    assert "no images" in _one_line_user_error(lambda: load_dataset("folder", tmp_path / "junk"))
    one = _folder(tmp_path / "one", classes=("cat",))
    assert "one class" in _one_line_user_error(lambda: load_dataset("folder", one))
    hollow = _folder(tmp_path / "hollow")
    (hollow / "fox").mkdir()
    assert "fox" in _one_line_user_error(lambda: load_dataset("folder", hollow))
    deep = _folder(tmp_path / "deep")
    Image.fromarray(np.full((12, 12), 3000, dtype=np.uint16)).save(deep / "cat" / "depth.png")
    assert "8-bit" in _one_line_user_error(lambda: load_dataset("folder", deep))
    broken = _folder(tmp_path / "broken")
    (broken / "dog" / "bad.png").write_bytes(b"not a png")
    assert "bad.png" in _one_line_user_error(lambda: load_dataset("folder", broken))
    _folder(tmp_path / "tv" / "train", classes=("cat", "dog"))
    _folder(tmp_path / "tv" / "val", classes=("cat", "yak"))
    assert "yak" in _one_line_user_error(lambda: load_dataset("folder", tmp_path / "tv"))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": "imagenet"}, "unknown dataset"),
        ({"name": "digits", "val_fraction": 1.5}, "out of range"),
        ({"name": "digits", "val_fraction": 0.0}, "out of range"),
        ({"name": "digits", "test_fraction": -0.1}, "out of range"),
        ({"name": "digits", "val_fraction": "half"}, "not a number"),
        ({"name": "digits", "val_fraction": 0.6, "test_fraction": 0.5}, "below 1"),
        ({"name": "folder"}, "root"),
        ({"name": "cifar10"}, "root"),
    ],
)
def test_bad_arguments_are_one_line_user_errors(kwargs: dict, words: str) -> None:
    assert words in _one_line_user_error(lambda: load_dataset(**kwargs))


def test_missing_dataset_files_say_where_they_go(tmp_path: Path) -> None:
    assert "cifar-10-batches-py" in _one_line_user_error(lambda: load_dataset("cifar10", tmp_path))
    assert "cifar-100-python" in _one_line_user_error(lambda: load_dataset("cifar100", tmp_path / "absent"))
    assert "FashionMNIST/raw" in _one_line_user_error(lambda: load_dataset("fashion-mnist", tmp_path))


def test_a_single_class_pool_is_refused() -> None:
    x = torch.zeros(6, 1, 4, 4, dtype=torch.uint8)
    assert "two classes" in _one_line_user_error(lambda: from_arrays("t", x, torch.zeros(6), ("a",)))


def test_image_folder_is_mapped_from_disk_decoded_once(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "imgs"
    g = np.random.default_rng(0)
    pixels = {}
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            arr = g.integers(0, 256, (9, 7, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
            pixels[(c, i)] = arr
    d = load_dataset("folder", root, val_fraction=0.5)
    seen = {tuple(x.permute(1, 2, 0).reshape(-1).tolist()) for x in torch.cat([d.train.images, d.val.images])}
    assert seen == {tuple(a.reshape(-1).tolist()) for a in pixels.values()}  # every image, exactly as PIL decodes it
    ptr = d.train.images.data_ptr()  # the pixels live in the mapped file of decoded images, not in memory of their own
    maps = [ln.split() for ln in Path("/proc/self/maps").read_text().splitlines() if ln.rstrip().endswith(".u8")]
    assert any(int(m[0].split("-")[0], 16) <= ptr < int(m[0].split("-")[1], 16) for m in maps)
    opened = []
    real = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    again = load_dataset("folder", root, val_fraction=0.5)
    assert len(opened) == 12 and again.fingerprint == d.fingerprint  # headers probed, pixels not decoded again
    Image.fromarray(pixels[("a", 0)][::-1].copy()).save(root / "a" / "0.png")  # a changed file: decoded anew
    assert load_dataset("folder", root, val_fraction=0.5).fingerprint != d.fingerprint


def test_channel_stats_in_chunks_match_one_pass(monkeypatch) -> None:
    from nas_lightning.candidates import candidate

    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = candidate.channel_stats(x)
    monkeypatch.setattr(candidate, "CHUNKED_STATS", 500)
    cmean, cstd = candidate.channel_stats(x)
    assert torch.allclose(mean, cmean, atol=1e-6) and torch.allclose(std, cstd, atol=1e-6)

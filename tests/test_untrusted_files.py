"""Files a user is given never run code, and bad ones are refused in one line.

Checkpoints (``--ckpt``, ``--pretrain.ckpt``, ``--ckpt_path``), the official NB201 file and CIFAR
batches each get a pickled ``os.system`` payload that would create a marker file: every reader
refuses the file (exit 2 and one ``error:`` line where it is a command) and the marker never
appears. Around them: the project's own checkpoints and files in the official formats still load;
a decompression-bomb PNG, malformed CIFAR batches and class folders linked back into the image
folder are one-line errors.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from nas_lightning import metatrain as training
from nas_lightning.errors import UserError
from nas_lightning.candidates.sources import load_dataset
from nas_lightning.models.checkpoint import load_predictor, read_checkpoint
from nas_lightning.safe_load import load_checkpoint_file
from nas_lightning.tasks.official import load_official
from tests.test_cli_errors import _fork, forkserver  # noqa: F401 (a fixture)
from tests.conftest import tiny_run
from tests.test_official import expected, official_dict

pytestmark = pytest.mark.slow  # trains a tiny predictor and starts processes

REPO = Path(__file__).resolve().parents[1]
TRAIN, SEARCH = str(REPO / "train.py"), str(REPO / "search.py")
ARGS = tiny_run({"trainer.max_epochs": 1})


class Payload:
    """Unpickled by a plain unpickler, this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def _one_line(call) -> str:
    with pytest.raises(UserError) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def _command(ctx, script: str, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    return _fork(ctx, script, args, cwd, env, timeout=180)


def _refused(code: int, out: str, *words: str) -> None:
    """Exit 2 with one ``error:`` line holding ``words``, and no traceback."""
    assert code == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    for w in words:
        assert w in errors[0], errors[0]


# -- checkpoints ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where a tiny ``train.py`` run wrote ``runs/default/checkpoints/last.ckpt``."""
    root = tmp_path_factory.mktemp("run")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        training.fit(training.build_cli(ARGS))
    finally:
        os.chdir(cwd)
    return root


def _evil_copy(ckpt: Path, out: Path, marker: Path) -> Path:
    contents = load_checkpoint_file(ckpt)
    contents["extra"] = Payload(marker)
    torch.save(contents, out)
    return out


def test_own_checkpoint_loads_weights_only(run: Path) -> None:
    ckpt = run / "runs/default/checkpoints/last.ckpt"
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["loops"]  # nothing beyond torch's defaults
    assert read_checkpoint(ckpt)["hyper_parameters"]["hidden"] == 16
    module = load_predictor(ckpt)
    assert module.trained_on["tasks"] == ["nb201/cifar10/val_acc", "nb201/cifar100/train_time"]


def test_evil_checkpoint_is_refused_by_the_loader_and_nothing_runs(run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = _evil_copy(run / "runs/default/checkpoints/last.ckpt", tmp_path / "evil.ckpt", marker)
    assert "posix.system" in _one_line(lambda: load_predictor(evil))
    assert "posix.system" in _one_line(lambda: read_checkpoint(evil))
    assert not marker.exists()


def test_evil_checkpoint_is_refused_by_suggest_and_nothing_runs(run: Path, forkserver, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = _evil_copy(run / "runs/default/checkpoints/last.ckpt", tmp_path / "evil.ckpt", marker)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out = _command(forkserver, SEARCH, ["suggest", "--k", "3", "--ckpt", str(evil)], cwd)
    _refused(code, out, "evil.ckpt", "posix.system", "could run code")
    assert not marker.exists()


def test_evil_checkpoint_is_refused_by_train_resume_and_nothing_runs(run: Path, forkserver, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = _evil_copy(run / "runs/default/checkpoints/last.ckpt", tmp_path / "evil.ckpt", marker)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out = _command(forkserver, TRAIN, ARGS + ["--ckpt_path", str(evil)], cwd)
    _refused(code, out, "--ckpt_path", "posix.system")
    assert not marker.exists() and list(cwd.iterdir()) == []


def test_lightning_resume_reads_weights_only_even_when_the_environment_allows_more(
        run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's own restore (past train.py's check) refuses the payload too, even with
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set, which only changes loads that leave ``weights_only`` unset."""
    marker = tmp_path / "MARKER"
    evil = _evil_copy(run / "runs/default/checkpoints/last.ckpt", tmp_path / "evil.ckpt", marker)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(training, "check_resumable", lambda *args: None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="posix.system"):
        training.fit(training.build_cli(ARGS + ["--ckpt_path", str(evil)]))
    assert not marker.exists()


# -- the official NB201 file ---------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NAS_LIGHTNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NB201_PATH", raising=False)
    return tmp_path / "cache"


def test_evil_official_file_is_refused_and_nothing_runs(cache: Path, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    data = official_dict()
    data["extra"] = Payload(marker)
    torch.save(data, tmp_path / "evil.pth")
    msg = _one_line(lambda: load_official("cifar10", "val_acc", tmp_path / "evil.pth"))
    assert "posix.system" in msg and "evil.pth" in msg
    assert not marker.exists()
    assert not cache.exists() or not list(cache.iterdir())  # nothing cached from it


def test_evil_official_file_is_refused_by_a_command(cache: Path, forkserver, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    data = official_dict()
    data["extra"] = Payload(marker)
    torch.save(data, tmp_path / "evil.pth")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out = _command(forkserver, SEARCH, ["tasks", "--task", "nb201-official/cifar10/val_acc"], cwd,
                         {"NB201_PATH": str(tmp_path / "evil.pth"), "NAS_LIGHTNING_CACHE": str(cache)})
    _refused(code, out, "evil.pth", "posix.system")
    assert not marker.exists()


def test_official_file_as_written_with_numpy_1_still_loads(cache: Path, tmp_path: Path) -> None:
    """The real file pickles its numpy scalars as ``numpy.core.multiarray.scalar`` (numpy 1.x)."""
    raw = tmp_path / "nb201.pth"
    torch.save(official_dict(), raw, _use_new_zipfile_serialization=False)
    old = raw.read_bytes().replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
    assert b"numpy.core.multiarray\nscalar" in old
    raw.write_bytes(old)
    task = load_official("cifar100", "flops", raw)
    want = expected("cifar100", "flops")
    assert torch.allclose(task.values(), torch.tensor([want[a] for a in sorted(want)], dtype=torch.float64))
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


# -- CIFAR batches -------------------------------------------------------------------------------
def _cifar(root: Path, batch: dict | None = None, name: str = "data_batch_1", protocol: int = 4) -> Path:
    """A CIFAR-10 folder of small batches; ``batch`` replaces the one called ``name``."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for f, n in [(f"data_batch_{i}", 10) for i in range(1, 6)] + [("test_batch", 7)]:
        good = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
        (folder / f).write_bytes(pickle.dumps(batch if f == name and batch is not None else good, protocol=protocol))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=protocol))
    return root


def _evil_batch(marker: Path) -> dict:
    return {"data": np.zeros((10, 3072), dtype=np.uint8), "labels": [0] * 10, "batch_label": Payload(marker)}


def test_evil_cifar_batch_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    root = _cifar(tmp_path / "c10", _evil_batch(marker))
    msg = _one_line(lambda: load_dataset("cifar10", root))
    assert "posix.system" in msg and "data_batch_1" in msg
    assert not marker.exists()


def test_evil_cifar_batch_is_refused_by_a_command(forkserver, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    root = _cifar(tmp_path / "c10", _evil_batch(marker), name="test_batch")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out = _command(forkserver, SEARCH, ["compare", "--task", f"train:cifar10={root}", "--strategy", "random",
                                               "--budget", "1", "--seeds", "1", "--out", "out"], cwd)
    _refused(code, out, "test_batch", "posix.system")
    assert not marker.exists() and list(cwd.iterdir()) == []


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_batches_in_other_pickle_forms_still_load(tmp_path: Path, protocol: int) -> None:
    """Protocol 2 (as the official Python 2 files, with numpy 1.x's module name) and protocol 5."""
    root = _cifar(tmp_path, protocol=protocol)
    if protocol == 2:
        for f in (root / "cifar-10-batches-py").iterdir():
            f.write_bytes(f.read_bytes().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
        assert b"numpy.core.multiarray\n_reconstruct" in (root / "cifar-10-batches-py" / "test_batch").read_bytes()
    d = load_dataset("cifar10", root, val_fraction=0.2)
    assert (len(d.train), len(d.val), len(d.test), d.classes[3]) == (40, 10, 7, "c3")


@pytest.mark.parametrize("batch,words", [
    ([1, 2, 3], "not a dict"),
    ({"labels": [0] * 10}, "no 'data'"),
    ({"data": np.zeros((10, 3072), dtype=np.uint8)}, "no 'labels'"),
    ({"data": np.zeros((10, 100), dtype=np.uint8), "labels": [0] * 10}, "uint8 [N, 3072]"),
    ({"data": np.zeros((10, 3072), dtype=np.float32), "labels": [0] * 10}, "float32"),
    ({"data": np.zeros((10, 3072), dtype=np.uint8), "labels": [0] * 9}, "9 labels for 10 images"),
    ({"data": np.zeros((10, 3072), dtype=np.uint8), "labels": [12] * 10}, "labels outside 0..9"),
    ({"data": np.zeros((10, 3072), dtype=np.uint8), "labels": ["cat"] * 10}, "not a list of integers"),
], ids=["list", "no-data", "no-labels", "short-rows", "float", "label-count", "label-range", "label-text"])
def test_malformed_cifar_batch_is_one_line(tmp_path: Path, batch: Any, words: str) -> None:
    msg = _one_line(lambda: load_dataset("cifar10", _cifar(tmp_path, batch)))
    assert words in msg and "data_batch_1" in msg


# -- image folders -------------------------------------------------------------------------------
def _images(root: Path, classes: tuple[str, ...] = ("cat", "dog"), n: int = 3) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (60 * c, 20 * i, 0)).save(root / name / f"{i}.png")
    return root


def _png_bomb(path: Path, side: int = 20000) -> None:
    """A small PNG whose header claims ``side`` x ``side`` grayscale pixels (rows of zeros)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\0" * (side + 1) * 64, 9)  # 64 rows are enough: only the header matters
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_decompression_bomb_png_is_one_line(tmp_path: Path) -> None:
    root = _images(tmp_path / "imgs")
    _png_bomb(root / "dog" / "bomb.png")
    assert (root / "dog" / "bomb.png").stat().st_size < 64 * 1024
    msg = _one_line(lambda: load_dataset("folder", root))
    assert "bomb.png" in msg and "400,000,000 pixels" in msg and "limit" in msg


def test_image_over_the_pixel_limit_but_under_pils_refusal_is_one_line(tmp_path: Path) -> None:
    """Between PIL's warning and its refusal (1-2x its limit) PIL only warns; the limit still holds."""
    root = _images(tmp_path / "imgs")
    _png_bomb(root / "cat" / "big.png", side=10000)
    msg = _one_line(lambda: load_dataset("folder", root, image_size=8))  # resized: sizes may differ
    assert "10000x10000 (100,000,000 pixels)" in msg and "limit" in msg


def test_decompression_bomb_png_is_refused_by_a_command(forkserver, tmp_path: Path) -> None:
    root = _images(tmp_path / "imgs")
    _png_bomb(root / "dog" / "bomb.png")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, out = _command(forkserver, SEARCH, ["compare", "--task", f"train:imagefolder={root}", "--strategy", "random",
                                               "--budget", "1", "--seeds", "1", "--out", "out"], cwd)
    _refused(code, out, "bomb.png", "pixels")
    assert "DecompressionBomb" not in out and list(cwd.iterdir()) == []


@pytest.mark.parametrize("target,words", [(".", "image folder itself"), ("..", "above the image folder"),
                                          ("cat", "inside the image folder")], ids=["root", "above", "inside"])
def test_class_folder_linked_back_into_the_image_folder_is_refused(tmp_path: Path, target: str, words: str) -> None:
    root = _images(tmp_path / "imgs")
    (root / "everything").symlink_to(target, target_is_directory=True)
    msg = _one_line(lambda: load_dataset("folder", root))
    assert "everything" in msg and words in msg


def test_val_class_linked_to_a_train_class_is_refused(tmp_path: Path) -> None:
    _images(tmp_path / "imgs" / "train")
    (tmp_path / "imgs" / "val").mkdir()
    (tmp_path / "imgs" / "val" / "cat").symlink_to(tmp_path / "imgs" / "train" / "cat", target_is_directory=True)
    _images(tmp_path / "imgs" / "val", classes=("dog",))
    assert "inside the image folder" in _one_line(lambda: load_dataset("folder", tmp_path / "imgs"))


def test_class_folder_linked_to_a_folder_elsewhere_still_loads(tmp_path: Path) -> None:
    """A link to images kept outside the image folder is an ordinary way to assemble a dataset."""
    root = _images(tmp_path / "imgs")
    _images(tmp_path / "elsewhere", classes=("eel",))
    (root / "eel").symlink_to(tmp_path / "elsewhere" / "eel", target_is_directory=True)
    d = load_dataset("folder", root, val_fraction=1 / 3)
    assert d.classes == ("cat", "dog", "eel") and len(d.train) + len(d.val) == 9

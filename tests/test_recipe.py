"""Recipes and train_candidate, on tiny recipes: validation, presets, determinism, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas_lightning.errors import UserError
from nas_lightning.candidates import candidate
from nas_lightning.candidates.datasets import load_digits_data
from nas_lightning.candidates.network import analytic_params, arch_label, arch_string
from nas_lightning.candidates.recipe import PRESETS, Recipe, balanced_subset, get_recipe
from nas_lightning.candidates.train import train_candidate

TINY = Recipe(C=2, N=1, epochs=2, batch_size=16, lr=0.05, max_train_images=40)
CELL = ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks are overhead-bound: a second CPU thread only adds contention on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def test_presets() -> None:
    nb = get_recipe("200ep")
    assert (nb.C, nb.N, nb.epochs, nb.batch_size, nb.lr, nb.momentum, nb.weight_decay, nb.nesterov, nb.schedule) == (
        16, 5, 200, 256, 0.1, 0.9, 5e-4, True, "cosine",
    )
    assert get_recipe("12ep") == nb.replace(epochs=12)
    assert get_recipe() == PRESETS["cpu"]
    assert get_recipe("cpu", epochs=3).epochs == 3


def test_recipe_key_is_stable_and_ignores_the_seed() -> None:
    assert Recipe().key == Recipe().key and len(Recipe().key) == 16
    assert Recipe(seed=3).key == Recipe().key == Recipe(threads=1, deterministic=True).key
    assert Recipe(deterministic=False).key != Recipe().key  # other kernels, other accuracies
    assert Recipe(lr=0.2).key != Recipe().key
    assert PRESETS["200ep"].key != PRESETS["12ep"].key


@pytest.mark.parametrize(
    "changes",
    [
        {"C": 0}, {"N": -1}, {"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"lr": float("nan")}, {"momentum": 1.0},
        {"weight_decay": -1e-4}, {"momentum": 0.0}, {"schedule": "step"}, {"augment": "mixup"}, {"resolution": 2},
        {"max_train_images": 1}, {"seed": -1}, {"epochs": 2.5}, {"colour": True},
    ],
)
def test_out_of_range_fields_are_one_line_user_errors(changes: dict) -> None:
    with pytest.raises(UserError) as err:
        Recipe().replace(**changes)
    assert "\n" not in str(err.value)


def test_unknown_preset() -> None:
    with pytest.raises(UserError, match="200ep"):
        get_recipe("fast")


def test_balanced_subset() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 4)
    idx = balanced_subset(labels, 30, seed=0)
    assert len(idx) == 30 and len(set(idx.tolist())) == 30
    assert torch.bincount(labels[idx]).tolist() == [13, 13, 4]
    assert torch.equal(idx, balanced_subset(labels, 30, seed=0))
    assert not torch.equal(idx, balanced_subset(labels, 30, seed=1))


def test_train_candidate_is_deterministic_and_reports(digits, tmp_path: Path) -> None:
    rng_before = torch.get_rng_state()
    det_before = torch.are_deterministic_algorithms_enabled()
    a = train_candidate(CELL, digits, TINY, log_dir=tmp_path / "tb", accelerator="cpu")
    b = train_candidate(CELL, digits, TINY, accelerator="cpu")
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    assert torch.are_deterministic_algorithms_enabled() == det_before
    assert a["status"] == "ok" and a["reason"] == ""
    assert a["val_acc"] == b["val_acc"] and a["test_acc"] == b["test_acc"]
    assert 0.0 <= a["val_acc"] <= 100.0 and 0.0 <= a["test_acc"] <= 100.0
    assert a["params"] == analytic_params(CELL, C=2, N=1, num_classes=10, in_channels=1)
    assert a["arch"] == arch_string(CELL) and a["seed"] == 0 and a["recipe"] == TINY.key and a["seconds"] > 0
    assert list((tmp_path / "tb" / TINY.key / arch_label(CELL) / "seed0").glob("events.out.tfevents.*"))
    c = train_candidate(CELL, digits, TINY.replace(seed=1), accelerator="cpu")
    assert c["status"] == "ok" and c["seed"] == 1


def test_augmented_resized_training_runs(digits) -> None:
    r = train_candidate(CELL, digits, TINY.replace(epochs=1, resolution=12, augment="crop_flip", crop_padding=2), accelerator="cpu")
    assert r["status"] == "ok"


def test_nan_loss_is_a_failed_status(digits) -> None:
    r = train_candidate(("nor_conv_3x3",) * 6, digits, TINY.replace(lr=1e12, epochs=3), accelerator="cpu")
    assert r["status"] == "failed" and "loss became" in r["reason"] and r["val_acc"] is None


def test_out_of_memory_is_a_failed_status(digits, monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(self, batch, batch_idx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(candidate.CandidateModule, "training_step", oom)
    r = train_candidate(CELL, digits, TINY, accelerator="cpu")
    assert r["status"] == "failed" and r["reason"].startswith("out of memory") and r["params"] > 0


def test_other_errors_propagate(digits, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self, batch, batch_idx):
        raise RuntimeError("a bug")

    monkeypatch.setattr(candidate.CandidateModule, "training_step", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        train_candidate(CELL, digits, TINY, accelerator="cpu")


def test_bad_training_inputs(digits) -> None:
    with pytest.raises(UserError, match="classes"):
        train_candidate(CELL, digits, TINY.replace(max_train_images=5), accelerator="cpu")
    with pytest.raises(UserError):
        train_candidate(("nor_conv_3x3",) * 5, digits, TINY, accelerator="cpu")


def test_an_image_folder_defaults_to_the_folder_recipe(tmp_path: Path) -> None:
    from PIL import Image

    from nas_lightning.oracles import OracleFactory, OracleSettings

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i, side in enumerate((20, 24, 20, 28, 20)):  # mixed sizes: the folder recipe resizes to 32
            Image.new("RGB", (side, side), (40 * i, 0, 0)).save(tmp_path / "imgs" / c / f"{i}.png")
    target = OracleFactory(OracleSettings()).resolve(f"train:imagefolder={tmp_path / 'imgs'}")
    assert target.recipe == PRESETS["folder"] and target.data.image_size == (32, 32)
    changed = OracleFactory(OracleSettings(recipe=PRESETS["cpu"].replace(epochs=5, resolution=16))).resolve(f"train:imagefolder={tmp_path / 'imgs'}")
    assert changed.recipe.epochs == 5 and changed.recipe.C == PRESETS["cpu"].C and changed.data.image_size == (16, 16)
    assert OracleFactory(OracleSettings()).resolve("train:digits").recipe == PRESETS["cpu"]

"""A task is recognised by its content, not its name: the same table under another name is caught."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nas_lightning.commands.common import seen_note, target_and_source, transfer_sources
from nas_lightning.data.datamodule import NASTaskDataModule
from nas_lightning.errors import UserError
from nas_lightning.models.checkpoint import trained_on
from nas_lightning.spaces import NB201
from nas_lightning.tasks import official
from nas_lightning.tasks.embedded import load_embedded
from nas_lightning.tasks.load import load_task

SMALL = dict(steps_per_epoch=1, meta_batch=2, support=3, query=10, val_query=10, val_episodes=1)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """A user's CSV table of 60 architectures."""
    g = torch.Generator().manual_seed(0)
    archs = torch.randperm(NB201.size, generator=g)[:60].tolist()
    path = tmp_path / "dev.csv"
    path.write_text("arch,latency_ms\n" + "".join(f"{NB201.to_string(a)},{1 + i / 7:.4f}\n" for i, a in enumerate(archs)))
    return path


def _dm(**kw) -> NASTaskDataModule:
    dm = NASTaskDataModule(**{**SMALL, **kw})
    dm.resolve()
    return dm


def test_fingerprint_is_content_not_name(table: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy_under_another_name.csv"
    shutil.copy(table, copy)
    a, b = load_task(f"csv:{table}"), load_task(f"csv:{copy}@max")  # another name and direction, same table
    assert a.name != b.name and a.fingerprint == b.fingerprint
    assert load_embedded("cifar10", "val_acc").fingerprint != load_embedded("cifar100", "val_acc").fingerprint
    edited = tmp_path / "edited.csv"
    edited.write_text(table.read_text().replace(",1.0000\n", ",1.0001\n"))
    assert load_task(f"csv:{edited}").fingerprint != a.fingerprint  # one value changed: another table


def test_official_name_of_an_embedded_table_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    emb = load_embedded("cifar10", "val_acc")
    nan = torch.full_like(emb.table, float("nan"))
    tensors = {"archs": emb.archs}
    for d in ("cifar10", "cifar100", "ImageNet16-120"):
        for m in official.OFFICIAL_METRICS:
            tensors[f"{d}/{m}"] = nan
        tensors[f"{d}/val_acc_seeds"] = emb.seed_table
    tensors["cifar10/val_acc"] = emb.table.clone()  # the official file's numbers are the embedded ones
    tensors["cifar10/train_time"] = emb.cost
    monkeypatch.setattr(official, "_tensors", lambda source: tensors)
    assert load_task("nb201-official/cifar10/val_acc").fingerprint == emb.fingerprint
    with pytest.raises(UserError, match="same table as meta-train task nb201/cifar10/val_acc"):
        _dm(train_tasks=["nb201/cifar10/val_acc"], target_tasks=["nb201-official/cifar10/val_acc"])


def test_relative_and_absolute_paths_are_caught(table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(table.parent)
    with pytest.raises(UserError, match="same table"):
        _dm(train_tasks=[f"csv:{table.name}"], val_tasks=[f"csv:{table}"])
    with pytest.raises(UserError, match="same table"):
        _dm(train_tasks=["nb201/cifar10/val_acc", f"csv:{table.name}"], target_tasks=[f"csv:{table.resolve()}"])


def test_a_copied_csv_under_another_name_is_caught(table: Path, tmp_path: Path) -> None:
    copy = tmp_path / "new_phone.csv"
    shutil.copy(table, copy)
    with pytest.raises(UserError, match="same table"):
        _dm(train_tasks=["nb201/cifar10/val_acc", f"csv:{table}"], target_tasks=[f"csv:{copy}"])
    # a checkpoint trained on the table says so when the copy is evaluated, and transfer never picks it
    dm = _dm(train_tasks=["nb201/cifar10/val_acc", f"csv:{table}"])
    module = SimpleNamespace(trained_on=trained_on({"NASTaskDataModule": dm.state_dict()}))
    target = load_task(f"csv:{copy}")
    assert seen_note(module, target) == {"checkpoint_trained_on_task": True, "checkpoint_fed_back_queries": 0}
    assert transfer_sources(module, target) == []
    other = load_task("nb201/cifar100/val_acc")
    assert seen_note(module, other)["checkpoint_trained_on_task"] is False


def test_source_equal_to_task_is_refused(table: Path, tmp_path: Path) -> None:
    copy = tmp_path / "same.csv"
    shutil.copy(table, copy)
    with pytest.raises(UserError, match="same table as --task"):
        target_and_source(f"csv:{table}", f"csv:{copy}", 1, None)
    with pytest.raises(UserError, match="same table as --task"):
        target_and_source("nb201/cifar10/val_acc", "nb201/cifar10/val_acc", 1, None)
    target, source = target_and_source("nb201/cifar10/val_acc", "nb201/cifar100/val_acc", 1, None)
    assert source is not None and source.fingerprint != target.fingerprint


def test_fed_back_answers_are_counted_under_any_name(table: Path, tmp_path: Path) -> None:
    dm = _dm(train_tasks=["nb201/cifar10/val_acc"], target_tasks=[f"csv:{table}"])
    (oracle,) = dm.oracles.values()  # csv:<path>#latency_ms
    oracle.query(oracle.archs[:4])
    dm.refresh(oracle.name, oracle.archs[:4])
    copy = tmp_path / "renamed.csv"
    shutil.copy(table, copy)
    module = SimpleNamespace(trained_on=trained_on({"NASTaskDataModule": dm.state_dict()}))
    assert seen_note(module, load_task(f"csv:{copy}"))["checkpoint_fed_back_queries"] == 4

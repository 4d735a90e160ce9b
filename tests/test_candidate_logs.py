"""The TensorBoard run of a trained candidate says which architecture it is: the run's folder is
named by the cell, and its hyperparameters (architecture, dataset, recipe, seed) are logged with
the final validation accuracy as their metric."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nas_lightning.candidates.datasets import load_digits_data
from nas_lightning.candidates.network import arch_label, arch_string
from nas_lightning.candidates.recipe import Recipe
from nas_lightning.candidates.train import train_candidate

TINY = Recipe(C=2, N=1, epochs=1, batch_size=16, lr=0.05, max_train_images=40, seed=3)
CELL = ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3")


def test_arch_label_is_readable_and_filesystem_safe() -> None:
    label = arch_label(CELL)
    assert label == "conv3x3~0+skip~0,conv1x1~1+pool3x3~0,none~1,conv3x3~2"
    assert not set(label) & set('<>:"/\\|?* ')


def test_candidate_run_is_named_by_its_architecture_with_hparams(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_digits_data()
        result = train_candidate(CELL, data, TINY, log_dir=tmp_path, accelerator="cpu")
    finally:
        torch.set_num_threads(threads)
    assert result["status"] == "ok"
    (run,) = [p for p in tmp_path.rglob("seed3") if p.is_dir()]
    assert run.relative_to(tmp_path).parts == (TINY.key, "conv3x3~0+skip~0,conv1x1~1+pool3x3~0,none~1,conv3x3~2", "seed3")

    hparams = yaml.safe_load((run / "hparams.yaml").read_text())
    assert hparams["arch"] == arch_string(CELL) and hparams["seed"] == 3
    assert hparams["dataset"] == data.describe() and hparams["recipe/key"] == TINY.key
    assert hparams["recipe/C"] == 2 and hparams["recipe/epochs"] == 1 and hparams["recipe/max_train_images"] == 40

    events = EventAccumulator(str(run))
    events.Reload()
    assert "hp/val_acc" in events.Tags()["scalars"]
    assert events.Scalars("hp/val_acc")[-1].value == pytest.approx(result["val_acc"])
    hparams_plugin = events.PluginTagToContent("hparams")
    assert any(tag.startswith("_hparams_/") for tag in hparams_plugin)  # the HPARAMS view finds the run

"""The LightningModule through the real CLI: smoke run, checkpoints, resume, scoring, loading,
and the non-finite loss policy."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from nas_lightning.models.scoring import score
from torch.testing import assert_close
from torch.utils.data import DataLoader

from nas_lightning.spaces import NB201
from nas_lightning.data.episodes import EpisodeSource, sample_episodes
from nas_lightning.errors import UserError
from nas_lightning.models.checkpoint import load_predictor
from nas_lightning.models.module import MetaPredictor, NonFiniteLoss
from nas_lightning.metatrain import build_cli, fit
from tests.conftest import tiny_run

TARGET = "nb201/ImageNet16-120/val_acc"
SMALL = tiny_run({"data.meta_batch": 4, "data.support": 10, "data.query": 20, "data.val_query": 50, "model.hidden": 32,
                  "model.context": 32}, tasks=False)
SHORT = SMALL + ["--trainer.max_epochs", "2", "--data.steps_per_epoch", "5", "--search.per_round", "2"]
CKPT_DIR = Path("runs/default/checkpoints")


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_fast_dev_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--trainer.fast_dev_run", "true", "--data.steps_per_epoch", "2", *SMALL])
    fit(cli)
    assert cli.trainer.state.finished
    assert cli.trainer.global_step == 1
    assert cli.datamodule.oracles[TARGET].num_queries == 5  # the default search round ran
    assert not (tmp_path / CKPT_DIR / "last.ckpt").exists()  # a smoke run leaves nothing to resume from


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory):
    """Two epochs of the default config, shrunk; the final last.ckpt is kept aside as ``run1.ckpt``."""
    root = tmp_path_factory.mktemp("short_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cli = build_cli(SHORT)
        fit(cli)
    shutil.copy(root / CKPT_DIR / "last.ckpt", root / "run1.ckpt")
    return root, cli


def test_short_run_writes_checkpoints_and_logs(short_run) -> None:
    root, cli = short_run
    assert (root / CKPT_DIR / "last.ckpt").is_file()
    assert (root / CKPT_DIR / "best.ckpt").is_file()
    assert list((root / "runs" / "default").glob("version_*/events.out.tfevents.*"))
    ckpt = _ckpt(root / "run1.ckpt")
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 10
    assert len(ckpt["NASTaskDataModule"]["oracles"][TARGET]["order"]) == 4
    assert ckpt["hyper_parameters"]["space"] == NB201.name


def test_resume_continues(short_run, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = short_run
    monkeypatch.chdir(root)  # in place: the run's own directory (other tests use run1.ckpt)
    before = _ckpt(CKPT_DIR / "last.ckpt")
    fit(build_cli(SHORT + ["--ckpt_path", "last", "--trainer.max_epochs", "3"]))
    after = _ckpt(CKPT_DIR / "last.ckpt")
    assert after["epoch"] == before["epoch"] + 1 == 2
    assert after["global_step"] == before["global_step"] + 5
    order_before = before["NASTaskDataModule"]["oracles"][TARGET]["order"]
    order_after = after["NASTaskDataModule"]["oracles"][TARGET]["order"]
    assert len(order_before) == 4 and len(order_after) == 6
    assert order_after[:4] == order_before  # the search history grew rather than restarting


def test_resume_last_without_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="last"):
        fit(build_cli(SHORT + ["--ckpt_path", "last"]))
    with pytest.raises(UserError, match="no such checkpoint"):
        fit(build_cli(SHORT + ["--ckpt_path", "nowhere.ckpt"]))


# -- score ----------------------------------------------------------------------------------------
def _support(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(NB201.size, generator=g)[:n], torch.randn(n, generator=g)


def test_score_shapes_and_members(short_run) -> None:
    module = short_run[1].model.eval()
    sup, y = _support(12)
    cand = torch.arange(0, NB201.size, 97)
    s1 = score(module, sup, y, cand, True, members=4, generator=torch.Generator().manual_seed(0))
    s2 = score(module, sup, y, cand, True, members=4, generator=torch.Generator().manual_seed(1))
    assert s1.shape == (4, len(cand)) and torch.isfinite(s1).all()
    assert_close(s1[0], s2[0])  # member 0 adapts on the whole support
    assert_close(score(module, sup, y, cand, True)[0], s1[0])
    assert not torch.allclose(s1[1:], s2[1:])  # bootstrap members follow the generator
    # adaptation moves the scores away from the prior
    prior = score(module, sup[:0], y[:0], cand, True)
    assert prior.shape == (1, len(cand)) and torch.isfinite(prior).all()
    assert not torch.allclose(prior[0], s1[0])
    many = score(module, sup[:0], y[:0], cand, True, members=3)
    assert_close(many, prior.expand(3, -1))


def test_load_predictor_matches_in_memory(short_run) -> None:
    root, cli = short_run
    module = cli.model.eval()
    loaded = load_predictor(root / "run1.ckpt")
    assert not loaded.training
    for n in (0, 1, 12):
        sup, y = _support(n, seed=n)
        cand = torch.arange(3, NB201.size, 131)
        for maximise in (True, False):
            assert_close(score(loaded, sup, y, cand, maximise, members=3, generator=torch.Generator().manual_seed(5)),
                         score(module, sup, y, cand, maximise, members=3, generator=torch.Generator().manual_seed(5)))
    # the default config feeds the search back: both rounds' answers (2 a round) went back into training
    assert loaded.trained_on["fed_back"] == {"nb201/ImageNet16-120/val_acc": 4}
    assert list(loaded.trained_on["fed_back_fingerprints"].values()) == [4]
    assert "nb201/cifar10/val_acc" in loaded.trained_on["tasks"]


def test_load_predictor_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_predictor(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(UserError, match="unreadable"):
        load_predictor(garbage)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": MetaPredictor(hidden=8, context=0).state_dict()}, plain)
    with pytest.raises(UserError, match="not a nas-lightning"):
        load_predictor(plain)
    torch.save(torch.zeros(3), plain)
    with pytest.raises(UserError, match="not a nas-lightning"):
        load_predictor(plain)


def test_load_predictor_mismatch(short_run, tmp_path: Path) -> None:
    ckpt = _ckpt(short_run[0] / "run1.ckpt")
    ckpt["hyper_parameters"]["hidden"] = 7  # the state dict no longer fits
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(UserError, match="does not fit"):
        load_predictor(bad)
    ckpt["hyper_parameters"]["space"] = "nb101"
    torch.save(ckpt, bad)
    with pytest.raises(UserError, match="search space"):
        load_predictor(bad)


# -- non-finite losses ------------------------------------------------------------------------------
def _episodes(n: int = 3) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    archs = torch.randperm(NB201.size, generator=g)[:60]
    pool = EpisodeSource("synthetic", archs, torch.randn(60, generator=g), True)
    return DataLoader([sample_episodes([pool], 4, 5, 10, g) for _ in range(n)], batch_size=None)


def _train(module: MetaPredictor) -> L.Trainer:
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, train_dataloaders=_episodes())
    return trainer


def _small(on_nan: str) -> MetaPredictor:
    torch.manual_seed(0)
    return MetaPredictor(hidden=16, context=8, on_nan=on_nan)


def _poison(module: MetaPredictor) -> None:
    with torch.no_grad():
        module.net.head.bias.fill_(float("nan"))


def test_finite_training_moves_parameters() -> None:
    module = _small("stop")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = _train(module)
    assert trainer.global_step == 3
    assert any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_on_nan_stop() -> None:
    module = _small("stop")
    _poison(module)
    with pytest.raises(NonFiniteLoss, match="step"):
        _train(module)


def test_on_nan_skip(caplog: pytest.LogCaptureFixture) -> None:
    module = _small("skip")
    _poison(module)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="nas_lightning.models.module"):
        trainer = _train(module)
    assert trainer.global_step == 0
    for k, v in module.state_dict().items():
        assert_close(v, before[k], equal_nan=True, rtol=0, atol=0)
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 3


def test_bad_module_arguments() -> None:
    for kw in ({"predictor": "rnn"}, {"loss": "hinge"}, {"on_nan": "ignore"}):
        with pytest.raises(ValueError):
            MetaPredictor(**kw)


def test_compiled_meta_step_matches_eager() -> None:
    from torch._dynamo.utils import counters

    from benchmarks.maml import setup

    torch._dynamo.reset()
    counters.clear()
    grads = {}
    for compiled in (False, True):
        module, batch = setup({"meta_batch": 3, "steps": 2, "order": "second", "support": 4, "query": 6, "hidden": 16}, "cpu")
        module.query_losses(batch, compiled).mean().backward()
        grads[compiled] = {n: p.grad for n, p in module.named_parameters() if p.requires_grad}
    assert counters["stats"]["unique_graphs"] >= 1  # the compiled path really compiled
    assert grads[True].keys() == grads[False].keys()
    for name, g in grads[False].items():
        assert g.abs().sum() > 0, name  # every meta-parameter (inner learning rates too) gets a gradient
        assert_close(grads[True][name], g, rtol=1e-4, atol=1e-7)


def test_fast_dev_run_compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--trainer.fast_dev_run", "true", "--data.steps_per_epoch", "2", "--model.compile", "true", *SMALL])
    fit(cli)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.hparams.compile

"""The console of the commands: progress bars named by strategy and seed, log lines written above
the bars rather than into them, and third-party notices that tell the user nothing silenced while
warnings about the user's own settings still show."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytest
from tqdm import tqdm

from nas_lightning.cli import run_main
from nas_lightning.commands.trained_compare import run_training_comparison
from nas_lightning.console import quiet_third_party
from nas_lightning.oracles import OracleFactory, OracleSettings
from nas_lightning.oracles import training as oracle_module
from nas_lightning.candidates.network import OPS
from nas_lightning.candidates.recipe import get_recipe
from nas_lightning.search.strategies import RandomSearch, RegularizedEvolution


def _instant_training(ops, data, recipe, *args, **kwargs) -> dict:
    """A stand-in for a training: a value from the cell's ops, at once."""
    return {"status": "ok", "reason": "", "val_acc": float(sum(OPS.index(o) for o in ops)), "test_acc": None,
            "seconds": 0.01, "params": 0.1}


def test_compare_bars_are_named_by_strategy_and_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(oracle_module, "train_candidate", _instant_training)
    factory = OracleFactory(OracleSettings(recipe=get_recipe("cpu", epochs=1)), 2, default_store=tmp_path / "t.sqlite")
    target = factory.resolve("train:digits")
    run_training_comparison(target, {"random": RandomSearch, "rea": RegularizedEvolution}, 2, 2, factory, str(tmp_path))
    err = capsys.readouterr().err
    for label in ("random seed 0", "random seed 1", "rea seed 0", "rea seed 1"):
        assert f"{label}:" in err, err[-2000:]


def test_log_lines_are_written_above_a_running_bar(capsys: pytest.CaptureFixture) -> None:
    """A library's logger with its own console handler (as Lightning's has) logs while a bar runs:
    the line starts on a line of its own instead of being glued to the bar."""
    logger = logging.getLogger("tests.console.chatty")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("INFO %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    def main() -> int:
        with tqdm(total=3, desc="rea seed 0", file=sys.stderr) as bar:
            bar.update(1)
            logger.info("trained a candidate")
            bar.update(2)
        return 0

    try:
        with pytest.raises(SystemExit) as done:
            run_main(main)
    finally:
        logger.removeHandler(handler)
    assert done.value.code == 0
    pieces = capsys.readouterr().err.replace("\r", "\n").split("\n")
    (line,) = [p for p in pieces if "trained a candidate" in p]
    assert line == "INFO tests.console.chatty: trained a candidate"


def _shown(message: str, category: type[Warning], module: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_third_party()
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 1, module=module)
    return bool(caught)


def test_third_party_notices_are_silenced_and_warnings_on_settings_are_not(caplog: pytest.LogCaptureFixture) -> None:
    assert not _shown("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
                      "treespec.is_leaf()` instead.", FutureWarning, "lightning.pytorch.utilities._pytree")
    assert not _shown("Your `IterableDataset` has `__len__` defined. In combination with multi-process data loading "
                      "(when num_workers > 1), `__len__` could be inaccurate", UserWarning, "lightning.pytorch.utilities.data")
    # about the user's own settings: kept
    assert _shown("The number of training batches (3) is smaller than the logging interval Trainer(log_every_n_steps=20).",
                  UserWarning, "lightning.pytorch.loops.fit_loop")
    # the same deprecation raised by the user's own code: kept
    assert _shown("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "my_project.model")

    quiet_third_party()
    caplog.set_level(logging.INFO)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info(
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](https://pypi.org/project/litlogger/)")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
    token = logging.getLogger("ray._private.authentication.authentication_token_setup")
    token.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
    token.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")
    assert [r.getMessage().split(".")[0] for r in caplog.records] == [
        "GPU available: False, used: False", "Token authentication is disabled for this Ray cluster"]

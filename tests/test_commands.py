"""``search.py``: six subcommands, each with its own ``--help``, ``--config`` and ``--print_config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas_lightning.commands import COMMANDS, main, parser

NAMES = ("tasks", "compare", "rank", "suggest", "predict", "constrained", "tabulate")


def test_help_lists_the_seven_subcommands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert tuple(COMMANDS) == NAMES and all(name in text for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_subcommand_has_its_own_help(name: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert f"search.py [options] {name}" in text and "--print_config" in text and "--config" in text


def test_print_config_is_accepted_back_by_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "random,rea", "--budget", "4",
              "--seeds", "2", "--out", str(tmp_path / "a"), "--print_config"])
    config = tmp_path / "compare.yaml"
    config.write_text(capsys.readouterr().out)
    assert "strategy: random,rea" in config.read_text()
    assert main(["compare", "--config", str(config)]) == 0
    assert main(["compare", "--task", "nb201/cifar10/val_acc", "--strategy", "random,rea", "--budget", "4",
                 "--seeds", "2", "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    for r in (a, b):
        for s in r["strategies"].values():
            s.pop("seconds_mean")
            for seed in s["per_seed"]:
                seed.pop("seconds")
    assert a == b


def test_dashed_options_and_bare_booleans_are_accepted() -> None:
    cfg = parser().parse_args(["compare", "--task", "x", "--meta.batch", "2", "--oracle.noisy=true"])
    from nas_lightning.commands import _normalised

    assert _normalised(["compare", "--task", "x", "--meta.batch", "2", "--oracle.noisy"]) == \
        ["compare", "--task", "x", "--meta.batch", "2", "--oracle.noisy=true"]
    assert _normalised(["compare", "--oracle.ray.trial-cpus", "2", "--oracle.recipe.deterministic"]) == \
        ["compare", "--oracle.ray.trial_cpus", "2", "--oracle.recipe.deterministic=true"]
    assert _normalised(["compare", "--oracle.noisy", "false", "--task", "a-b"]) == \
        ["compare", "--oracle.noisy", "false", "--task", "a-b"]
    assert cfg.compare.meta.batch == 2 and cfg.compare.oracle.noisy is True

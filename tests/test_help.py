"""What the two commands say about themselves: ``--help`` leads with the project's description in
plain text, every option is described, a misspelt or abbreviated option is a one-line error that
points at ``--help``, and ``--version`` answers on both."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nas_lightning import __version__
from nas_lightning.commands import main as search_main
from nas_lightning.commands import parser as search_parser
from nas_lightning.errors import UserError
from nas_lightning.metatrain import build_cli

REPO = Path(__file__).resolve().parents[1]


def _train_help(capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_cli(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _undescribed(help_text: str) -> list[str]:
    """Options of a ``--help`` text whose entry has no description (only jsonargparse's type note)."""
    body = help_text.split("\noptions:\n", 1)[1]
    bad = []
    for entry in re.split(r"\n(?=  -)", body):
        entry = entry.strip()
        if not entry.startswith("-"):
            continue
        lines = entry.splitlines()
        same = re.match(r"\S+(?:, \S+)?(?: \S+)?\s{2,}(\S.*)", lines[0])
        desc = same.group(1) if same else (lines[1].strip() if len(lines) > 1 else "")
        if not desc or desc.startswith("(type"):
            bad.append(lines[0].strip())
    return bad


def test_train_help_leads_with_the_project_description(capsys: pytest.CaptureFixture) -> None:
    text = _train_help(capsys)
    head = "\n".join(text.splitlines()[:20])
    assert "Meta-train a performance predictor for few-shot neural architecture search" in head
    assert "python train.py --config configs/held_out.yaml" in head
    assert "Customize every aspect of training" not in text  # Lightning's own description
    assert ":class:" not in text and "``" not in text  # docstring markup shown as plain text
    for group, words in (("model", "The predictor"), ("data", "meta-train"), ("checkpoint", "runs/NAME/checkpoints")):
        assert re.search(rf"^{group}:\n  [^\n]*{words}", text, re.M), group


def test_every_option_is_described(capsys: pytest.CaptureFixture) -> None:
    assert _undescribed(_train_help(capsys)) == []
    top = search_parser()
    for name in ("tasks", "compare", "rank", "suggest", "predict", "constrained"):
        sub = top._subcommands_action._name_parser_map[name]
        assert _undescribed(sub.format_help()) == [], name


def test_suggest_help_states_no_benchmark_figures() -> None:
    sub = search_parser()._subcommands_action._name_parser_map["suggest"]
    description = sub.format_help().split("\noptions:\n")[0]
    assert not re.search(r"[+-]?\d\.\d{3}", description), description


@pytest.mark.parametrize("args", [["--trainer.max_epoch", "1"], ["--model.hid", "8"]], ids=["max_epoch", "hid"])
def test_train_options_are_never_abbreviated(args: list[str]) -> None:
    with pytest.raises(UserError, match=rf"unrecognized arguments: {re.escape(args[0])}.*see python train.py --help"):
        build_cli(args)


def test_search_options_are_never_abbreviated() -> None:
    with pytest.raises(UserError, match=r"--budg.*\(see python search\.py compare --help\)$"):
        search_main(["compare", "--task", "nb201/cifar10/val_acc", "--budg", "5"])


def test_search_hint_names_the_script_once() -> None:
    with pytest.raises(UserError) as err:
        search_main(["comparee"])
    assert str(err.value).endswith("(see python search.py --help)") and "search.py search.py" not in str(err.value)


def test_a_wrong_type_names_the_option_on_one_line() -> None:
    with pytest.raises(UserError) as err:
        build_cli(["--data.support", "ten"])
    assert str(err.value) == "--data.support: expected int, got value: ten (see python train.py --help)"


def test_version_on_both_commands(capsys: pytest.CaptureFixture) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    with pytest.raises(SystemExit) as exit_:
        build_cli(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"nas-lightning {__version__}"
    with pytest.raises(SystemExit) as exit_:
        search_main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"nas-lightning {__version__}"


@pytest.mark.slow  # starts a process
def test_misspelt_option_prints_at_most_three_lines(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--model.hiden", "1"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and len(lines) <= 3, lines
    assert lines[-1] == "error: unrecognized arguments: --model.hiden 1 (see python train.py --help)"
    assert list(tmp_path.iterdir()) == []

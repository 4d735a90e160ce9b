"""What ``train.py --help`` says, and how its parser reports a mistake.

The parser is LightningCLI's, with the project's description and group headings in place of
Lightning's generic ones, docstring markup (``:class:`X```, double backquotes) shown as plain
text, no abbreviated options (``--trainer.max_epoch`` is an error, not ``max_epochs``), one-line
errors and ``--version``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser

from nas_lightning import __version__
from nas_lightning.errors import UserError
from nas_lightning.parse_messages import one_line

USAGE = "python train.py [--config FILE.yaml] [--run NAME] [--ckpt_path last] [--SECTION.KEY VALUE ...]"
DESCRIPTION = """\
Meta-train a performance predictor for few-shot neural architecture search: MAML over many
tasks (tables of an architecture metric), so that a few measurements of a new task rank its
whole search space. configs/default.yaml is read first; --config FILE.yaml (several may follow)
and --section.key VALUE change it, --print_config shows the result without training.

A run lives in runs/NAME/ (NAME: --run, else the config's logger name): TensorBoard logs in
version_N/, checkpoints in checkpoints/ (best.ckpt, last.ckpt). --ckpt_path last continues it;
a name that already holds checkpoints is never overwritten. search.py uses the checkpoints:
python search.py --help.

Examples:
  python train.py
  python train.py --config configs/held_out.yaml --run held_out
  python train.py --config configs/device_latency.yaml --trainer.max_epochs 1
  python train.py --run held_out --ckpt_path last --trainer.max_epochs 20
"""
GROUPS = {
    "model": "The predictor and its meta-learning (MAML inner loop, loss, learning rates).",
    "data": "The meta-train, meta-val and target tasks, and the episodes drawn from them.",
    "search": "The predictor-guided search round on every target task at each epoch end.",
    "checkpoint": "Where and what to save (default folder runs/NAME/checkpoints).",
    "trainer": "Lightning's Trainer: epochs, devices, precision, logger, callbacks.",
}
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(text: str) -> str:
    """Docstring markup as plain text: ``:class:`~a.B``` -> ``a.B``, double backquotes -> none."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text))


class _Formatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description's own line breaks kept."""


class TrainParser(LightningArgumentParser):
    """LightningCLI's parser: no abbreviations, one-line errors, plain-text help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        """A parse error is a :class:`UserError`: one line (``run_main`` prints it, exit status 2)."""
        raise UserError(f"{one_line(message)} (see python train.py --help)")

    def format_help(self) -> str:
        return plain(super().format_help())


def describe_parser(parser: LightningArgumentParser) -> None:
    """The project's description and group headings, ``--version``, and help for the run folder."""
    parser.usage = USAGE
    parser.description = DESCRIPTION
    for name, text in GROUPS.items():
        if name in parser.groups:
            parser.groups[name].description = text
            parser.groups[name].title = name
    parser.add_argument("--version", action="version", version=f"nas-lightning {__version__}",
                        help="print the version and exit")
    for action in parser._actions:
        if action.dest == "checkpoint.dirpath":
            action.help = "the folder of the run's checkpoints (default: runs/NAME/checkpoints, NAME from --run)"

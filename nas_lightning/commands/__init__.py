"""The ``search.py`` command line: seven subcommands on jsonargparse, one small module each.

    python search.py tasks    [--task SPEC]
    python search.py compare  --task SPEC --strategy meta,rea,random --budget N --seeds S --ckpt CKPT --out DIR
                              [--meta.* ...] [--pretrain.* ...] [--oracle.* ...]
    python search.py rank     --task SPEC --ckpt CKPT --support K --seeds S [--support_archs FILE] --out DIR
    python search.py suggest  --ckpt CKPT --k K [--task SPEC]
    python search.py predict  --task csv:FILE --ckpt CKPT --out FILE.csv
    python search.py constrained --accuracy SPEC --latency csv:FILE --limit 20 --ckpt CKPT [--ask N] [--out FILE]
    python search.py tabulate --task train:DATASET --cells N --out DIR [--oracle.* ...]

Each subcommand takes ``--config FILE.yaml`` and ``--print_config`` as ``train.py`` does. Options
are spelt with underscores (``--support_archs``); the dashed spelling (``--support-archs``) is
accepted too, and a boolean option alone (``--oracle.noisy``) means true. Grouped settings are
typed dataclasses, nested with a dot (``--oracle.ray.workers 2``, ``--meta.beta 1``), the same
groups ``train.py`` takes (``--data.oracle.ray.workers 2``, ``--search.meta.beta 1``).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from typing import Any, Callable

from jsonargparse import ActionConfigFile, ArgumentParser

from nas_lightning.commands.compare import compare
from nas_lightning.commands.constrained import constrained
from nas_lightning.commands.predict import predict
from nas_lightning.commands.rank import rank
from nas_lightning.commands.suggest import suggest
from nas_lightning.commands.tabulate import tabulate
from nas_lightning.commands.tasks import tasks
from nas_lightning import __version__
from nas_lightning.errors import UserError
from nas_lightning.interrupt import on_signals
from nas_lightning.parse_messages import one_line

COMMANDS: dict[str, Callable[..., int]] = {"tasks": tasks, "compare": compare, "rank": rank, "suggest": suggest,
                                           "predict": predict, "constrained": constrained, "tabulate": tabulate}


class _Parser(ArgumentParser):
    """Parser errors are user errors: one line, exit status 2 (through ``run_main``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --budg is an error, never --budget
        super().__init__(*args, **kwargs)

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        raise UserError(f"{one_line(message)} (see python {self.prog.replace(' [options]', '')} --help)")


def parser() -> ArgumentParser:
    """``search.py`` and its subcommands, each parser built from its function's signature and docstring."""
    top = _Parser(prog="search.py", description="Search, rank and adapt on a task with a meta-learned predictor.")
    top.add_argument("--version", action="version", version=f"nas-lightning {__version__}", help="print the version and exit")
    sub = top.add_subcommands(dest="command", required=True)
    for name, fn in COMMANDS.items():
        p = _Parser(prog=f"search.py {name}", description=fn.__doc__.split("\n\n")[0])
        p.add_argument("--config", action=ActionConfigFile, help="a YAML file of these options (see --print_config)")
        p.add_function_arguments(fn, as_group=False)
        sub.add_subcommand(name, p, help=fn.__doc__.split("\n\n")[0].replace("\n", " "))
    return top


def _bool_options(fn: Callable[..., Any]) -> set[str]:
    """The boolean options of a command, nested groups included (``oracle.noisy``)."""
    hints = typing.get_type_hints(fn)

    def walk(prefix: str, tp: Any) -> set[str]:
        if tp is bool:
            return {prefix}
        if dataclasses.is_dataclass(tp):
            sub = typing.get_type_hints(tp)
            return {n for f in dataclasses.fields(tp) for n in walk(f"{prefix}.{f.name}", sub[f.name])}
        return set()

    return {n for name in inspect.signature(fn).parameters for n in walk(name, hints.get(name))}


def _normalised(argv: list[str]) -> list[str]:
    """``--support-archs x`` as ``--support_archs x`` (option names only, never values), and a
    boolean option given alone (``--oracle.noisy``) as ``--oracle.noisy=true``."""
    command = next((a for a in argv if a in COMMANDS), None)
    flags = set() if command is None else _bool_options(COMMANDS[command])
    out = []
    for i, a in enumerate(argv):
        if a.startswith("--") and len(a) > 2:
            flag, eq, value = a[2:].partition("=")
            flag = flag.replace("-", "_")
            bare = not eq and (i + 1 == len(argv) or argv[i + 1].startswith("--") or argv[i + 1].lower() not in ("true", "false"))
            a = "--" + flag + ("=true" if flag in flags and bare else eq + value)
        out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand."""
    argv = _normalised(sys.argv[1:] if argv is None else list(argv))
    top = parser()
    cfg = top.instantiate(top.parse_args(argv))  # typed options (a recipe) become their values
    name = cfg.command
    options = {k: v for k, v in vars(cfg[name]).items() if k != "config"}
    with on_signals():  # SIGINT/SIGTERM: one line and 130/143 (run_main), after every clean-up ran
        return COMMANDS[name](**options)

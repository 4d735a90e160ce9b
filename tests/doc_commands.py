"""The ``python train.py ...`` and ``python search.py ...`` command lines of Markdown documents, and
a check that each one parses, without training or searching: a renamed option breaks the tests,
not the reader.

Commands are read from fenced code blocks whose language is empty, ``bash``, ``sh``, ``shell`` or
``console`` (a schematic line with placeholders belongs in a ``text`` block); a trailing backslash
continues a line, a ``$`` prompt, environment assignments (``OMP_NUM_THREADS=1``), a trailing
comment and anything after a pipe, a redirection or ``&&`` are left out.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path
from typing import Iterator

from nas_lightning.errors import UserError

SHELL_FENCES = ("", "bash", "sh", "shell", "console", "zsh")
SCRIPTS = ("train.py", "search.py")
_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)[^\n]*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_STOP = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "&>", "<", "&"}


def code_lines(markdown: str) -> Iterator[str]:
    """Logical lines (continuations joined) of the shell-like fenced code blocks of ``markdown``."""
    fence, pending = None, ""
    for raw in markdown.splitlines():
        m = _FENCE.match(raw)
        if fence is None:
            if m:
                fence = (m.group(2), m.group(3).lower() in SHELL_FENCES)
            continue
        if m and m.group(2).startswith(fence[0]) and not m.group(3):
            if fence[1] and pending.strip():
                yield pending.strip()
            fence, pending = None, ""
            continue
        if not fence[1]:
            continue
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield (pending + line).strip()
        pending = ""


def commands(markdown: str) -> list[tuple[str, list[str]]]:
    """``(script, arguments)`` of every ``python train.py`` / ``python search.py`` line in ``markdown``."""
    found = []
    for line in code_lines(markdown):
        try:
            words = shlex.split(line.removeprefix("$ "), comments=True)
        except ValueError:
            continue
        while words and _ENV.match(words[0]):
            words = words[1:]
        if len(words) < 2 or not re.fullmatch(r"python3?", words[0]) or Path(words[1]).name not in SCRIPTS:
            continue
        args = []
        for w in words[2:]:
            if w in _STOP or w.startswith((">", "2>")):
                break
            args.append(w)
        found.append((Path(words[1]).name, args))
    return found


def check(script: str, args: list[str], root: Path) -> str | None:
    """Parse ``args`` as ``script`` would, run from ``root`` (nothing is trained or searched); the
    error message, or ``None`` when they parse."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if script == "train.py":
                from nas_lightning.metatrain import build_cli

                build_cli([*args, "--print_config"])  # prints the config and exits: never trains
                return "train.py did not stop at --print_config"
            from nas_lightning.commands import _normalised, parser

            parser().parse_args(_normalised(args))
            return None
    except UserError as err:
        return str(err)
    except SystemExit as err:
        return None if err.code in (0, None) else f"exit status {err.code}"
    finally:
        os.chdir(cwd)

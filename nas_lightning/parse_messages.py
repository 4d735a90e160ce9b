"""A jsonargparse error message as one line: the option, then the first line of what is wrong."""

from __future__ import annotations

import re

_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
_CLASS = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


def one_line(message: str) -> str:
    """``Parser key "data.support":\\n  Expected a <class 'int'>. Got value: ten`` as
    ``--data.support: expected int, got value: ten``; any other message with its lines joined."""
    lines = [ln.strip().lstrip("- ").strip() for ln in str(message).strip().splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return "invalid arguments"
    key = _KEY.match(lines[0])
    if key and (key.group(2) or len(lines) > 1):
        detail = _CLASS.sub(r"\1", key.group(2) or lines[1]).replace("Expected a ", "expected ").replace(". Got value:", ", got value:")
        return f"--{key.group(1)}: {detail}"
    return " ".join(" ".join(lines).split())

"""What reaches the console: log lines that do not break progress bars, and no third-party notices
that tell the user nothing.

:func:`quiet_third_party` silences, each at its source and by its text, only these:

* Lightning's "Tip: ... litlogger" advertisement, printed by every Trainer;
* Lightning's "`IterableDataset` has `__len__` defined ... (when num_workers > 1)": the episode
  loaders always load in the main process, so the case it warns of cannot happen;
* torch's "`isinstance(treespec, LeafSpec)` is deprecated", raised inside Lightning's own code;
* Ray's "Token authentication is enabled for this Ray cluster": the local instance a command
  starts (and stops) makes and uses its token by itself. Ray's warning that authentication is
  *disabled* stays.

Warnings about a user's own settings (a logging interval longer than an epoch, a checkpoint folder
that is not empty...) are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from typing import Iterator

# (logger name, pattern of the message): records dropped where they are made
_NOTICES: tuple[tuple[str, str], ...] = (
    ("lightning.pytorch.utilities.rank_zero", r"Tip: .*litlogger"),
    ("lightning.fabric.utilities.rank_zero", r"Tip: .*litlogger"),
    ("ray._private.authentication.authentication_token_setup", r"^Token authentication is enabled for this Ray cluster"),
)
# (message pattern, category, module pattern) for warnings.filterwarnings
_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\.pytorch\.utilities\._pytree"),
    (r"Your `IterableDataset` has `__len__` defined", UserWarning, r"lightning\.pytorch\.utilities\.data"),
)


class _DropMatching(logging.Filter):
    """Drops the records whose message matches ``pattern``."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet_third_party() -> None:
    """Silence the notices listed in this module's docstring (idempotent)."""
    for name, pattern in _NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_DropMatching(pattern))
    for message, category, module in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def _console_loggers() -> list[logging.Logger]:
    """The loggers, root included, with a handler of their own that writes to the console
    (the root's from ``logging.basicConfig``, Lightning's)."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [lg for lg in loggers if isinstance(lg, logging.Logger) and any(
        isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr) for h in lg.handlers)]


@contextlib.contextmanager
def bars_and_logs() -> Iterator[None]:
    """Within the block, console log lines are written through tqdm, above the progress bars,
    instead of into them."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=_console_loggers()):
        yield

"""SIGINT and SIGTERM during a command: one exception, so that every ``finally`` (a Ray instance
stopped, a store closed) runs, then one line and the conventional exit status (128 + signal).

:func:`on_signals` turns both signals into :class:`Interrupted` for the block (further signals
during the clean-up are ignored); code that knows what was kept sets :attr:`Interrupted.note`,
and :func:`nas_lightning.cli.run_main` prints ``interrupted: <note>`` and exits with
:attr:`Interrupted.code`. ``Interrupted`` is not an ``Exception``: no ``except Exception`` of a
library swallows it (Lightning re-raises it after its own clean-up).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from types import FrameType
from typing import Iterator

log = logging.getLogger(__name__)
NOTHING_WRITTEN = "nothing was written; run the same command again"


class Interrupted(BaseException):
    """A command stopped by a signal: ``code`` is 128 + the signal's number (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, signum: int, note: str = NOTHING_WRITTEN) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.note = note

    @property
    def code(self) -> int:
        return 128 + self.signum


def _ignore(signum: int, frame: FrameType | None) -> None:
    log.debug("signal %d ignored while stopping", signum)


def _raise(signum: int, frame: FrameType | None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # the clean-up runs to its end
        signal.signal(sig, _ignore)
    raise Interrupted(signum)


@contextlib.contextmanager
def on_signals() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise :class:`Interrupted` (main thread only; elsewhere
    nothing changes); the previous handlers come back at its end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in before:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def through_extensions() -> Iterator[None]:
    """Let :class:`Interrupted` out of a C extension's call: raised by the signal handler while such a
    call runs (Ray's ``wait`` and ``get``), it comes back wrapped in a ``SystemError``."""
    try:
        yield
    except SystemError as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, Interrupted):
            raise cause from None
        raise

"""A signal that arrives while a C extension's call runs (Ray's wait) still stops the command cleanly."""

from __future__ import annotations

import signal

import pytest

from nas_lightning.interrupt import Interrupted, through_extensions


def _extension_call() -> None:
    """What a Cython function does when a signal handler raised inside it."""
    try:
        raise Interrupted(signal.SIGTERM)
    except Interrupted as err:
        raise SystemError("<cyfunction CoreWorker.wait> returned a result with an exception set") from err


def test_an_interruption_wrapped_by_an_extension_comes_out_as_itself() -> None:
    with pytest.raises(Interrupted) as stop:
        with through_extensions():
            _extension_call()
    assert stop.value.code == 143


def test_other_system_errors_pass_unchanged() -> None:
    with pytest.raises(SystemError, match="something else"):
        with through_extensions():
            raise SystemError("something else")

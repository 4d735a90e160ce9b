"""What the command-line entry points share: one-line errors for user mistakes, exit status 2."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from nas_lightning.console import bars_and_logs, quiet_third_party
from nas_lightning.errors import UserError
from nas_lightning.interrupt import Interrupted


def _stopped_by_signal(err: SystemExit) -> bool:
    """Lightning's ``SIGTERMException`` (a ``SystemExit`` with no code): training stopped by SIGTERM/Ctrl-C."""
    return type(err).__name__ == "SIGTERMException"  # by name: no Lightning import for search.py's sake


def run_main(main: Callable[[], int | None]) -> None:
    """Run ``main``; a :class:`UserError` becomes one line on stderr and exit status 2.

    An interrupted training run (SIGTERM, or Ctrl-C routed through Lightning's SIGTERM path)
    exits with 143 and a one-line note; a plain Ctrl-C with 130. Log lines are written above the
    progress bars, and third-party notices that tell the user nothing are silenced
    (:mod:`nas_lightning.console`). A command stopped through
    :func:`nas_lightning.interrupt.on_signals` prints its own note and exits with 128 + the signal.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_third_party()
    try:
        with bars_and_logs():
            code = main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as err:
        print(f"interrupted: {err.note}", file=sys.stderr)
        sys.exit(err.code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit as err:
        if _stopped_by_signal(err):
            print("interrupted: resume with --ckpt_path last", file=sys.stderr)
            sys.exit(143)
        raise
    sys.exit(code or 0)

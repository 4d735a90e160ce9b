"""What the command-line entry points share: one-line errors for user mistakes, exit status 2."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from nas_lightning.errors import UserError


def run_main(main: Callable[[], int | None]) -> None:
    """Run ``main``; a :class:`UserError` becomes one line on stderr and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)

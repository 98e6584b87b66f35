"""User errors: one clear line and a non-zero exit instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem the user can fix (a param, a file, the network); the message says how."""


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main, turning user errors into one line on stderr and exit code 1."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", force=True)
    try:
        main()
    except PipelineError as error:
        print(f"error: {name}: {error}", file=sys.stderr)
        sys.exit(1)

"""The subcommands. Each is a @hydra.main function, so Hydra owns their argv."""

import sys
from collections.abc import Callable
from typing import TypeVar

from ganrun.errors import GanrunError

T = TypeVar("T")


def report_errors(fn: Callable[[], T]) -> T:
    """Run ``fn``; a GanrunError becomes one line on stderr and exit status 2."""
    try:
        return fn()
    except GanrunError as e:
        print(f"ganrun: error: {e}", file=sys.stderr)
        sys.stderr.flush()
        raise SystemExit(2) from None

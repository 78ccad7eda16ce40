"""The subcommands. Each is a @hydra.main function, so Hydra owns their argv."""

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from ganrun.errors import DivergenceError, GanrunError

T = TypeVar("T")

log = logging.getLogger("ganrun")


def report_errors(fn: Callable[[], T]) -> T:
    """Run ``fn``; a GanrunError becomes one line on stderr and the error's exit
    status (2 for bad input, 3 for a diverged run). A divergence also goes into the
    job's log file (train.log), and only there, so the console shows it once; bad
    input leaves the run's files as they were."""
    try:
        return fn()
    except GanrunError as e:
        if isinstance(e, DivergenceError):
            _to_log_files(f"error: {e}")
        print(f"ganrun: error: {e}", file=sys.stderr)
        sys.stderr.flush()
        raise SystemExit(e.exit_status) from None


def _to_log_files(message: str) -> None:
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)

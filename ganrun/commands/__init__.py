"""The subcommands. Each is a @hydra.main function, so Hydra owns their argv."""

import logging
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from ganrun import fsio
from ganrun.errors import DivergenceError, GanrunError
from ganrun.logfiles import to_log_files

T = TypeVar("T")

log = logging.getLogger("ganrun")


def report_errors(fn: Callable[[], T]) -> T:
    """Run ``fn``; a GanrunError becomes one line on stderr and the error's exit
    status (2 for bad input, 3 for a diverged run). A divergence also goes into the
    job's log file (train.log), and only there, so the console shows it once; bad
    input leaves the run's files as they were.

    A file that cannot be written (a full disk, a read-only file system, no
    permission, a file where a folder should be) is the same kind of line, exit
    status 2, wherever the write happened: a ``WriteError`` from ganrun's own
    writers (``ganrun.fsio``), or an OSError with one of those errnos from any
    other writer (TensorBoard's event files, a progress picture), found in the
    exception's chain. While ``fn`` runs, a log file that cannot be written gives
    one warning line rather than a traceback per record (``fsio.quiet_write_failures``).
    """
    try:
        with fsio.quiet_write_failures():
            return fn()
    except GanrunError as e:
        if isinstance(e, DivergenceError):
            _to_log_files(f"error: {e}")
        _fail(e)
    except Exception as e:
        error = fsio.write_error_in(e)
        if error is None:
            raise
        _fail(error)


def _fail(e: GanrunError) -> NoReturn:
    print(f"ganrun: error: {e}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(e.exit_status) from None


def _to_log_files(message: str) -> None:
    to_log_files(logging.ERROR, "%s", message)

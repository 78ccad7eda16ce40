"""Errors that reach the user as one line, without a traceback.

Anything raised as a ``GanrunError`` is printed by the CLI as
``ganrun: error: <message>`` with the error's ``exit_status``: 2 for bad input
(config, data, checkpoint, run dir), 3 for a training run that diverged; a run
stopped by a signal prints ``ganrun: stopped: <message>`` and exits 75 (see
docs/RELIABILITY.md, "Exit statuses"). Messages say what is wrong and, where
there are choices, what would be right.
"""

from __future__ import annotations

from collections.abc import Sequence


class GanrunError(Exception):
    """A problem with the user's input (config, data, checkpoint)."""

    exit_status = 2


class ConfigError(GanrunError):
    pass


class DataError(GanrunError):
    pass


class CheckpointError(GanrunError):
    pass


class DivergenceError(GanrunError):
    """Training produced non-finite numbers (ganrun.training.guard): ``step`` is the
    generator step at which they were found, ``what`` names them ("loss/d",
    "D weights", ...). Exit status 3, so scripts can tell it from bad input."""

    exit_status = 3

    def __init__(self, step: int, what: Sequence[str], detail: str = ""):
        self.step, self.what, self.detail = int(step), list(what), detail
        super().__init__(
            f"training diverged at step {self.step}: non-finite {', '.join(self.what)}{detail}"
        )


class Stopped(GanrunError):
    """A training run stopped early by a signal (SIGTERM, SIGUSR1, Ctrl-C): its
    checkpoint is written (or, before the loop, nothing was trained). Exit status 75
    (EX_TEMPFAIL in sysexits.h: "try again later"), so schedulers and sweepers tell a
    preempted job from a finished (0), diverged (3) or refused (2) one."""

    exit_status = 75

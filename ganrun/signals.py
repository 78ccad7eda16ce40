"""Stop signals for `ganrun train`: SIGTERM, SIGUSR1 (a cluster's preemption notice)
and Ctrl-C (SIGINT). See docs/RELIABILITY.md.

Two modes, one set of handlers installed for the whole command (``install``):

* **during the training loop** (``StopSignals.deferred()``) a signal only sets a
  flag: the loop finishes its step, writes a checkpoint and stops. A second Ctrl-C
  interrupts at once (KeyboardInterrupt), for a user who does not want to wait.
* **before and after it** (imports, composing the config, loading data and a
  checkpoint, fitting reference statistics, the final evaluation) a signal raises
  ``Interrupted`` at once: nothing is being trained there, and a scheduler's grace
  period (SLURM's KillWait: 30 s by default) is too short to wait for, e.g., an
  evaluation to finish. ``Interrupted`` is a BaseException so that no
  ``except Exception`` on the way swallows it; the train command turns it into one
  line and exit status ``ganrun.errors.Stopped.exit_status``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

SIGNALS = tuple(
    s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR1", None)) if s is not None
)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(BaseException):
    """A stop signal outside the training loop (see the module docstring)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal_name(self.signum))


class StopSignals:
    """Process-wide record of the first stop signal, and the handlers' mode."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._defer = 0
        self._old: dict[int, Any] = {}

    def install(self) -> StopSignals:
        """Install the handlers (main thread only; elsewhere Python cannot, and the
        defaults stay). Idempotent."""
        if self._old or threading.current_thread() is not threading.main_thread():
            return self
        for sig in SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def reset(self) -> None:
        """Forget a recorded signal (a new job of a multirun sweep in this process)."""
        self.signum = None

    @property
    def installed(self) -> bool:
        return bool(self._old)

    @contextlib.contextmanager
    def deferred(self):
        """Within: a signal sets ``signum`` and returns (the loop checks it each step)."""
        self._defer += 1
        try:
            yield self
        finally:
            self._defer -= 1

    def raise_if_pending(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT and self._defer:
            raise KeyboardInterrupt  # a second Ctrl-C: now
        if self.signum is None:
            self.signum = signum
        if not self._defer:
            raise Interrupted(signum)


STOP = StopSignals()

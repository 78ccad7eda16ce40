"""One run per run dir: the lock, the writability check, and auto-resume.

See docs/RELIABILITY.md ("Requeue and auto-resume", "One run per run dir").

* ``RunDirLock``: an exclusive ``flock`` on ``<run dir>/.ganrun.lock`` for as long
  as a training process lives. The kernel releases it when the process exits in
  any way (SIGKILL and the OOM killer included), so a crashed owner never leaves a
  stale lock behind; the file itself stays (deleting a lock file races with the
  next locker) and says who holds it: pid, host, start time and command.
* ``check_writable``: the run dir and its checkpoint dir accept a file, checked
  before the first step rather than discovered at the first checkpoint.
* ``auto_resume``: a run dir that already holds checkpoints is either this run's
  (the same settings, up to the ``OPERATIONAL`` ones), and training continues from
  its newest finite checkpoint — a requeued cluster job picks up where it stopped —
  or another run's, and starting is refused with one line saying which setting
  differs and how to continue or start fresh.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import logging
import math
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ganrun import checkpoint as ckpt
from ganrun import fsio
from ganrun.errors import GanrunError
from ganrun.fsio import cause

log = logging.getLogger(__name__)

LOCK_NAME = ".ganrun.lock"

# Settings that may differ between a run and its continuation: they change how long
# it trains, where and how it reports, not what a step computes (resume= accepts
# the same). Everything else in the config must be equal for checkpoints in a run
# dir to count as "this run's".
OPERATIONAL = (
    "resume",
    "logger",
    "eval",
    "sweep",
    "trainer.steps",
    "trainer.device",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.log_every",
    "trainer.image_every",
    "trainer.n_fixed",
    "trainer.num_workers",
    "trainer.threads",
    # how a step runs, not what it computes (up to float rounding): a requeued job may
    # change them; trainer.precision and sync_batchnorm change the numbers, so they count
    "trainer.channels_last",
    "trainer.compile",
    "trainer.compile_mode",
    "trainer.progress",
    "trainer.deterministic",
    "trainer.auto_resume",
    "trainer.on_nan",
    "trainer.rollback_lr_factor",
    "trainer.max_rollbacks",
)


class RunDirError(GanrunError):
    """The run dir cannot be used: held by another process, unwritable, or holding
    another run's checkpoints."""


# --------------------------------------------------------------------------- lock
class RunDirLock:
    """``with RunDirLock(run_dir):`` — or ``acquire()`` / ``release()``."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented)
            log.warning("no run-dir lock on this platform: do not start two runs in one dir")
            return self
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(
                f"cannot write to the run dir {self.run_dir}: {cause(e)}; choose another "
                "with hydra.run.dir=<dir> or fix its permissions"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunDirError(
                    f"{self.run_dir} is in use by another ganrun process ({holder(self.path)}); "
                    "wait for it to finish or stop it, or train in another dir (hydra.run.dir=<dir>)"
                ) from None
            raise RunDirError(f"cannot lock {self.path}: {cause(e)}") from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
        }
        try:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(info) + "\n").encode())
        except OSError:  # the lock holds without its note (e.g. a full disk)
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def holder(path: Path) -> str:
    """Who holds the lock, from the note its owner wrote."""
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return "owner unknown"
    if not isinstance(info, dict) or "pid" not in info:
        return "owner unknown"
    return f"pid {info['pid']} on {info.get('host', '?')} since {info.get('started', '?')}: {info.get('command', '?')}"


def is_locked(run_dir: Path) -> str | None:
    """The holder's description when another process holds ``run_dir``'s lock."""
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return holder(path)
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return None


# --------------------------------------------------------------------------- writability
def check_writable(folder: Path, what: str) -> None:
    """RunDirError unless ``folder`` (created if missing) accepts a new file."""
    folder = Path(folder)
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"0")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as e:
        raise RunDirError(
            f"cannot write {what} to {folder}: {cause(e)}; free space, fix the permissions "
            "or choose another run dir (hydra.run.dir=<dir>)"
        ) from None


# --------------------------------------------------------------------------- status
STATUS_NAME = "status.json"
STATUSES = ("running", "finished", "failed", "diverged", "stopped")


class RunStatus:
    """``<run dir>/status.json``: what became of the run, for people, sweepers and
    ``ganrun report``. Written atomically by the process holding the run dir's lock,
    only once it has claimed the dir (never over another run's): "running" when
    training starts, then "finished" / "failed" / "diverged" / "stopped" with the
    one-line message and exit status. A "running" status whose run dir is not locked
    (``is_locked``) belongs to a process that was killed."""

    def __init__(self, run_dir: Path, steps: int):
        self.path = Path(run_dir) / STATUS_NAME
        self.steps = int(steps)
        self.started = _dt.datetime.now().isoformat(timespec="seconds")
        self._t0 = _dt.datetime.now()

    def write(
        self,
        status: str,
        step: int,
        message: str | None = None,
        exit_status: int | None = None,
        **extra: Any,
    ) -> None:
        now = _dt.datetime.now()
        record = {
            "status": status,
            "message": message,
            "exit_status": exit_status,
            "step": int(step),
            "steps": self.steps,
            "started": self.started,
            "updated": now.isoformat(timespec="seconds"),
            "wall_seconds": round((now - self._t0).total_seconds(), 1),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            **extra,
        }
        try:
            fsio.atomic_write_text(self.path, json.dumps(record, indent=1) + "\n")
        except (fsio.WriteError, OSError) as e:  # a full disk must not hide the run's own error
            log.warning("%s", e)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(run_dir) / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------- identity
def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def _operational(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL)


def differing_settings(cfg: DictConfig | Mapping, stored: Mapping) -> list[tuple[str, Any, Any]]:
    """(key, stored value, current value) for every identifying setting that differs
    between ``cfg`` and a checkpoint's resolved config. Keys present on one side only
    (settings added by a newer ganrun) are not compared."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    now, then = _flat(cfg), _flat(stored)
    out = []
    for key in sorted(set(now) & set(then)):
        if _operational(key):
            continue
        a, b = then[key], now[key]
        if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b)):
            out.append((key, a, b))
    return out


def auto_resume(cfg: DictConfig, run_dir: Path) -> tuple[Path, dict] | None:
    """For a run started without ``resume=``: the checkpoint to continue from when
    ``run_dir`` already holds this run's checkpoints (with its state), or None when
    it holds none. Raises RunDirError when they are another run's, or when
    ``trainer.auto_resume=false`` would start this run over on top of them."""
    from ganrun.training.guard import earlier_finite_checkpoint

    folder = Path(run_dir) / ckpt.CKPT_DIR
    found = ckpt.step_checkpoints(folder)
    if not found:
        return None
    newest = found[-1][0]
    fresh = f"start this run in a fresh dir (hydra.run.dir=<new dir>) or delete {folder}"
    target = earlier_finite_checkpoint(folder, math.inf)
    if target is None:
        raise RunDirError(
            f"{run_dir} holds checkpoints (up to step {newest}) but none is readable with finite "
            f"weights, so this run cannot continue from them; {fresh}"
        )
    path, state = target
    diff = differing_settings(cfg, state.get("config") or {})
    if diff:
        diff.sort(key=lambda d: (d[0].count("."), d[0]))  # model.z_dim before model.G.z_dim
        shown = "; ".join(f"{k}={a!r} there, {b!r} now" for k, a, b in diff[:2])
        more = f" (and {len(diff) - 2} more)" if len(diff) > 2 else ""
        raise RunDirError(
            f"{run_dir} holds another run's checkpoints (up to step {newest}) with different "
            f"settings: {shown}{more}; continue that run with `ganrun train resume={run_dir}`, "
            f"or {fresh}"
        )
    if not bool(cfg.trainer.get("auto_resume", True)):
        raise RunDirError(
            f"{run_dir} already holds this run's checkpoints (up to step {newest}) and "
            "trainer.auto_resume=false would start it over on top of them; continue with "
            f"`ganrun train resume={run_dir}` (or drop trainer.auto_resume=false), or {fresh}"
        )
    return path, state


def preflight(command_line: list[str]) -> None:
    """The checks of ``ganrun train`` that must come before Hydra writes into the run
    dir (``.hydra/``, train.log): another process holding it, or another run's
    checkpoints in it. Only when the command line names the run dir
    (``hydra.run.dir=...``) and does not resume: a default, time-stamped run dir is
    new. ``train()`` repeats both checks (a multirun job's dir is not known here)."""
    from hydra import compose, initialize_config_dir

    from ganrun.paths import conf_dir

    if not any(a.split("=", 1)[0].lstrip("+") == "hydra.run.dir" for a in command_line):
        return
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose("train", overrides=command_line, return_hydra_config=True)
        run_dir = Path(str(OmegaConf.select(cfg, "hydra.run.dir")))
    except Exception:  # an interpolation only Hydra's runtime resolves: train() checks
        return
    if cfg.get("resume"):
        return
    busy = is_locked(run_dir)
    if busy:
        raise RunDirError(
            f"{run_dir} is in use by another ganrun process ({busy}); wait for it to finish "
            "or stop it, or train in another dir (hydra.run.dir=<dir>)"
        )
    with contextlib.suppress(OmegaConfBaseException):
        OmegaConf.set_struct(cfg, False)
        del cfg["hydra"]
    auto_resume(cfg, run_dir)

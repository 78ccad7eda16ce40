"""Checkpoints: state dicts, step, RNG states and the resolved config — no pickled objects.

Files are written atomically (temporary file in the same folder, fsync, rename,
fsync of the folder), so a name under ``checkpoints/`` never holds a partial
file, and are read with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers: loading a checkpoint cannot run code.
RNG states are stored as tensors and plain Python types (NumPy's state is
converted), so nothing needs allow-listing.

Layout of a run dir::

    <run>/checkpoints/step-00001000.pt   newest K kept (trainer.keep_checkpoints)
    <run>/checkpoints/best.pt            best by the chosen metric (evaluation)

Pruning never removes the file just written, and stale temporary files left by
a writer that was killed mid-write are removed (``clean_temporaries``) at the
next step checkpoint and when training starts.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganrun import fsio
from ganrun.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT = "ganrun-checkpoint"
VERSION = 1
CKPT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)\.pt$")
_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")  # atomic_save's ".<name>.tmp-<pid>"


# --------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(np_state[0]),
            "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["key"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- writing
def atomic_save(obj: Any, path: Path, elsewhere: str = fsio.RUN_DIR_ELSEWHERE) -> None:
    """``torch.save(obj)`` to ``path`` atomically (``fsio.atomic_open``): a full disk,
    a read-only or unwritable folder is one line (fsio.WriteError) naming ``path``,
    and neither ``path`` nor a temporary file is left behind (an earlier file under
    ``path`` stays as it was). torch reports a full disk as ``RuntimeError: [enforce
    fail at inline_container.cc] ... unexpected pos``; the OSError behind it (its
    context), or else the folder's free space, tells it apart from other errors."""
    with fsio.atomic_open(Path(path), elsewhere) as f:
        torch.save(obj, f)


def step_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"step-{step:08d}.pt"


def step_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the step checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with only what ``torch.load(weights_only=True)`` accepts: tensors,
    dicts, lists, tuples and Python scalars (subclasses of str/int/float, such
    as torch.__version__, become the base type). Anything else is a bug: raise."""
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict):
        items = {plain(k, where): plain(v, f"{where}.{k}") for k, v in obj.items()}
        return OrderedDict(items) if isinstance(obj, OrderedDict) else items
    if isinstance(obj, (list, tuple)):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    for base in (bool, int, float, str):
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(
        f"{where}: {type(obj).__name__} cannot go into a checkpoint (weights_only would refuse it)"
    )


def write(path: Path, step: int, payload: dict[str, Any]) -> Path:
    """A checkpoint file (format header + ``payload``) written atomically at ``path``."""
    atomic_save(plain({"format": FORMAT, "version": VERSION, "step": int(step), **payload}), path)
    return Path(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists under another user, or cannot tell: keep
        return True
    return True


def clean_temporaries(folder: Path) -> list[Path]:
    """Remove the stale temporary files (``.<name>.tmp-<pid>``, see ``atomic_save``)
    in ``folder``; returns the removed paths.

    A temporary file is left behind when its writer was killed mid-write (SIGKILL,
    the OOM killer, a lost node). It is stale when its pid suffix is not this
    process' pid and no process with that pid is alive (``os.kill(pid, 0)`` raises
    ProcessLookupError). The pid is used rather than the file's age because a live
    writer of a large checkpoint on a slow or network disk can take minutes, and
    deleting its file would make its rename fail; liveness is exact for writers on
    this machine. Limits, both on the safe side (a file kept, never a live one
    removed): a dead writer's pid that has been reused by another process, or a
    leftover carrying this process' own pid (a container restarted with the same
    pid), keeps its file until a later call. A writer on another machine sharing
    the folder would look dead; two machines writing one run dir is not supported
    anyway (each would prune the other's checkpoints).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        m = _TMP_RE.match(p.name)
        if not m or not p.is_file():
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            p.unlink()
        except FileNotFoundError:  # removed by someone else meanwhile
            continue
        removed.append(p)
    if removed:
        log.info(
            "removed %d stale temporary file(s) left by an interrupted write: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed


def save(run_dir: Path, step: int, payload: dict[str, Any], keep: int) -> Path:
    """A step checkpoint; keeps it and the newest ``keep - 1`` of the others (by step).

    The file just written is never pruned, even when the folder holds checkpoints
    at higher steps (an earlier run's, after a run restarted from step 0 in the
    same dir): before, it sorted first among them and was removed right after
    being written. Stale temporary files are removed first (``clean_temporaries``).
    """
    clean_temporaries(step_path(run_dir, step).parent)
    path = write(step_path(run_dir, step), step, payload)
    others = [p for _, p in step_checkpoints(path.parent) if p.name != path.name]
    for p in others[: max(0, len(others) - max(0, keep - 1))]:
        p.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- reading
def load_file(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    not_ours = (
        f"{path} is not a ganrun checkpoint: give a run dir or a checkpoints/step-*.pt "
        "file written by ganrun train"
    )
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    # torch.save writes a zip archive ("PK\3\4"); its legacy format and plain
    # pickles start with the pickle PROTO opcode (0x80). Anything else (random
    # bytes, a text file, an empty file) is no checkpoint at all, whatever the
    # unpickler's error says about it.
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise CheckpointError(not_ours)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle refused by weights_only, ...
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        if "Unsupported operand" in text:  # bytes the unpickler cannot even parse
            if not head.startswith(b"PK\x03\x04"):
                raise CheckpointError(not_ours) from None  # a plain pickle, or junk after 0x80
            raise CheckpointError(
                f"{path} is not a readable checkpoint: its data is not in torch.save's format"
            ) from None
        if "weights_only" in text or "Unsupported global" in text:  # a GLOBAL, REDUCE, ...
            raise CheckpointError(
                f"{path} holds Python objects a checkpoint may not contain; refusing to load it (it could run code)"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {first[:160]}"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(not_ours)
    if obj.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer ganrun (format {obj['version']}); upgrade ganrun to read it"
        )
    return obj


def resolve(target: str | Path) -> Path:
    """A checkpoint file from a path that names a file or a run dir (newest step checkpoint)."""
    p = Path(target).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        folder = p / CKPT_DIR if (p / CKPT_DIR).is_dir() else p
        found = step_checkpoints(folder)
        if not found:
            raise CheckpointError(
                f"no checkpoints in {folder} (expected files named step-NNNNNNNN.pt)"
            )
        return found[-1][1]
    raise CheckpointError(f"no checkpoint at {target} (give a run dir or a .pt file)")


def load(
    target: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]]:
    """Load from a file, or from a run dir's newest checkpoint that reads cleanly
    (falling back to older ones if the newest is damaged)."""
    path = resolve(target)
    p = Path(target).expanduser()
    if p.is_dir():
        folder = path.parent
        errors = []
        for _, candidate in reversed(step_checkpoints(folder)):
            try:
                obj = load_file(candidate, map_location)
            except CheckpointError as e:
                errors.append(str(e))
                continue
            if errors:
                log.warning("skipped unreadable newer checkpoint(s): %s", "; ".join(errors))
            return candidate, obj
        raise CheckpointError(f"no readable checkpoint in {folder}: {errors[0]}")
    return path, load_file(path, map_location)


def run_dir_of(path: Path) -> Path:
    """The run dir a checkpoint file belongs to."""
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name == CKPT_DIR else path.parent

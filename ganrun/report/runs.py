"""Finding run dirs and reading what they say about themselves.

A run dir is a folder holding ``.hydra/overrides.yaml`` (written by Hydra for
every job) or ``status.json`` (written by ``ganrun train``). Everything is read,
nothing imported from the training code but the run-dir lock check: a run dir's
files are the interface (``.hydra/``, ``status.json``, ``metrics.jsonl``,
``checkpoints/step-*.pt``, ``samples/step-*.png``, ``train.log``).

A damaged or half-written file (a truncated last line of ``metrics.jsonl``, an
unreadable ``status.json``) costs that piece of information and adds a note to
the run; it never stops the report.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ganrun.errors import ConfigError

STATUS_FILE = "status.json"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CONFIG_FILE = Path(".hydra") / "config.yaml"

# How a run ended, as the report words it. status.json's "stopped" (a stop signal:
# checkpointed, resumable) reads "stopped early"; "killed" is a "running" status
# whose process is gone; "unfinished" is a run dir from before status.json that
# did not reach its last step and holds no lock.
FINISHED, RUNNING, KILLED, STOPPED, UNFINISHED = (
    "finished",
    "running",
    "killed",
    "stopped early",
    "unfinished",
)
_FROM_STATUS_FILE = {"finished": FINISHED, "failed": "failed", "diverged": "diverged"}
_STEP_FILE = re.compile(r"step-(\d+)\.(?:pt|png)$")
_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_SKIP_DIRS = {"checkpoints", "samples", "tb", "eval", "rejection", "wandb", "__pycache__"}


@dataclass
class Point:
    step: int
    kimg: float | None
    value: float


@dataclass
class Run:
    path: Path
    label: str = ""
    overrides: list[str] = field(default_factory=list)
    status: str = UNFINISHED
    message: str | None = None
    step: int | None = None
    steps: int | None = None
    wall_seconds: float | None = None
    history: dict[str, list[Point]] = field(default_factory=dict)  # score -> points by step
    sample: Path | None = None  # the newest progress grid
    seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # .hydra/config.yaml
    notes: list[str] = field(default_factory=list)

    def final(self, score: str) -> Point | None:
        points = self.history.get(score)
        return points[-1] if points else None

    def best(self, score: str) -> Point | None:
        """The best finite value by the score's direction (None when the direction
        is unknown or no value is finite); the earliest step wins a tie."""
        sign = direction(score)
        points = [p for p in self.history.get(score, []) if math.isfinite(p.value)]
        if sign is None or not points:
            return None
        return max(points, key=lambda p: (sign * p.value, -p.step))


def direction(score: str) -> int | None:
    """+1 where higher is better, -1 where lower is, None when ganrun does not know."""
    from ganrun.metrics.evaluate import HIGHER_IS_BETTER, LOWER_IS_BETTER, base_name

    name = base_name(score)
    if name in HIGHER_IS_BETTER:
        return 1
    if name in LOWER_IS_BETTER:
        return -1
    return None


# --------------------------------------------------------------------------- finding
def is_run_dir(path: Path) -> bool:
    return (path / OVERRIDES_FILE).is_file() or (path / STATUS_FILE).is_file()


def _natural(path: Path) -> list:
    """Sort key: job numbers as numbers (2 before 10)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_run_dirs(dirs: list[str | Path]) -> list[Path]:
    """Every run dir in or at each of ``dirs``; ConfigError for a folder that does
    not exist or holds no run. Order: as given, then naturally sorted inside each."""
    if not dirs:
        raise ConfigError("no folder given: ganrun report <multirun or run dir> [...]")
    found: list[Path] = []
    for given in dirs:
        path = Path(given).expanduser()
        if not path.exists():
            raise ConfigError(f"no such folder: {given}")
        if not path.is_dir():
            raise ConfigError(f"{given} is not a folder: give a multirun dir or a run dir")
        path = path.resolve()
        if is_run_dir(path):
            inside = [path]
        else:
            inside = []
            for root, subdirs, _ in os.walk(path):
                here = Path(root)
                if here != path and is_run_dir(here):
                    inside.append(here)
                    subdirs[:] = []
                    continue
                subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in _SKIP_DIRS]
        if not inside:
            raise ConfigError(
                f"no ganrun runs in {given}: a run dir holds .hydra/overrides.yaml or "
                "status.json (written by ganrun train)"
            )
        found.extend(p for p in sorted(inside, key=_natural) if p not in found)
    return found


def labels(paths: list[Path]) -> list[str]:
    """Short names: each run dir relative to the folder all of them share
    (a multirun's job numbers; a single run dir's own name)."""
    parents = [p.parent for p in paths]
    base = Path(os.path.commonpath(parents)) if parents else Path()
    return [str(p.relative_to(base)) for p in paths]


def read_runs(dirs: list[str | Path]) -> list[Run]:
    paths = find_run_dirs(dirs)
    runs = [read_run(p) for p in paths]
    for run, label in zip(runs, labels(paths)):
        run.label = label
    return runs


# --------------------------------------------------------------------------- reading
def read_run(path: Path) -> Run:
    run = Run(path=Path(path))
    run.config = _config(run)
    seed = run.config.get("seed")
    run.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    run.overrides = _overrides(run)
    run.history = _history(run)
    run.sample = _newest(path / "samples", ".png")
    _status(run)
    return run


def _overrides(run: Run) -> list[str]:
    file = run.path / OVERRIDES_FILE
    if not file.is_file():
        return []
    try:
        items = yaml.safe_load(file.read_text()) or []
    except (OSError, yaml.YAMLError) as e:
        run.notes.append(f"cannot read {OVERRIDES_FILE}: {_first_line(e)}")
        return []
    if not isinstance(items, list):
        run.notes.append(f"{OVERRIDES_FILE} is not a list of overrides")
        return []
    return [canonical(str(o)) for o in items if not override_key(str(o)).startswith("hydra")]


@functools.cache
def _parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def canonical(text: str) -> str:
    """One spelling per override (Hydra's): ``a=false`` and ``a=False``, ``lr=1e-4``
    and ``lr=0.0001`` are the same setting and must group together."""
    try:
        (ov,) = _parser().parse_overrides([text])
        if ov.is_delete() and ov.value() is None:
            return ov.get_key_element()
        return f"{ov.get_key_element()}={ov.get_value_element_as_str()}"
    except Exception:  # not Hydra's grammar (hand-written): compared as written
        return text


def override_key(text: str) -> str:
    """``+trainer.foo=1`` -> ``trainer.foo``; ``model=dcgan`` -> ``model``."""
    return text.split("=", 1)[0].lstrip("+~")


def _history(run: Run) -> dict[str, list[Point]]:
    file = run.path / "metrics.jsonl"
    if not file.is_file():
        return {}
    by_step: dict[int, dict[str, Any]] = {}
    bad = 0
    try:
        lines = file.read_text(errors="replace").splitlines()
    except OSError as e:
        run.notes.append(f"cannot read metrics.jsonl: {_first_line(e)}")
        return {}
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
            scores = record["scores"]
            if not isinstance(scores, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        by_step[step] = record  # a resumed run may evaluate a step again: the last one counts
    if bad:
        run.notes.append(f"{bad} unreadable line(s) in metrics.jsonl skipped")
    history: dict[str, list[Point]] = {}
    for step in sorted(by_step):
        record = by_step[step]
        kimg = record.get("kimg")
        kimg = float(kimg) if isinstance(kimg, (int, float)) else None
        for name, value in record["scores"].items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            history.setdefault(str(name), []).append(Point(step, kimg, value))
    return history


def _newest(folder: Path, suffix: str) -> Path | None:
    best: tuple[int, Path] | None = None
    if not folder.is_dir():
        return None
    for f in folder.iterdir():
        m = _STEP_FILE.match(f.name)
        if m and f.suffix == suffix and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), f)
    return best[1] if best else None


def _step_of(path: Path | None) -> int | None:
    m = _STEP_FILE.match(path.name) if path else None
    return int(m.group(1)) if m else None


def _config(run: Run) -> dict[str, Any]:
    file = run.path / CONFIG_FILE
    if not file.is_file():
        return {}
    try:
        cfg = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        run.notes.append(f"cannot read {CONFIG_FILE}: {_first_line(e)}")
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _configured_steps(run: Run) -> int | None:
    trainer = run.config.get("trainer")
    steps = trainer.get("steps") if isinstance(trainer, dict) else None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def _locked(path: Path) -> str | None:
    from ganrun.training.rundir import is_locked

    return is_locked(path)


def _status(run: Run) -> None:
    file = run.path / STATUS_FILE
    record: dict[str, Any] | None = None
    if file.is_file():
        try:
            record = json.loads(file.read_text())
            if not isinstance(record, dict) or "status" not in record:
                raise ValueError("no status in it")
        except (OSError, ValueError) as e:
            run.notes.append(f"cannot read status.json: {_first_line(e)}")
            record = None
    newest_ckpt = _step_of(_newest(run.path / "checkpoints", ".pt"))
    last_eval = max((p[-1].step for p in run.history.values() if p), default=None)
    if record is not None:
        _from_status_file(run, record)
    else:
        _inferred(run, newest_ckpt)
    if run.step is None:
        run.step = max((s for s in (newest_ckpt, last_eval) if s is not None), default=None)
    if run.steps is None:
        run.steps = _configured_steps(run)
    if run.wall_seconds is None:
        run.wall_seconds = _log_span(run.path / "train.log")


def _from_status_file(run: Run, record: dict[str, Any]) -> None:
    state = str(record.get("status"))
    run.message = _str_or_none(record.get("message"))
    run.step = _int_or_none(record.get("step"))
    run.steps = _int_or_none(record.get("steps"))
    wall = record.get("wall_seconds")
    run.wall_seconds = float(wall) if isinstance(wall, (int, float)) else None
    if state == "running":
        holder = _locked(run.path)
        if holder:
            run.status = RUNNING
        else:
            run.status = KILLED
            where = f"pid {record.get('pid', '?')} on {record.get('host', '?')}"
            run.message = run.message or (
                f"the process ({where}) ended without a final status, last update "
                f"{record.get('updated', '?')}: killed or out of memory"
            )
    elif state == "stopped":
        run.status = STOPPED
    elif state in _FROM_STATUS_FILE:
        run.status = _FROM_STATUS_FILE[state]
    else:
        run.status = state  # a status this version does not know: shown as written
        run.notes.append(f"unknown status {state!r} in status.json")


def _inferred(run: Run, newest_ckpt: int | None) -> None:
    """A run dir from before status.json: the lock, the checkpoints and the log."""
    steps = _configured_steps(run)
    if _locked(run.path):
        run.status = RUNNING
    elif newest_ckpt is not None and steps is not None and newest_ckpt >= steps:
        run.status = FINISHED
    else:
        run.status = UNFINISHED
        error = _last_error(run.path / "train.log")
        reached = "no checkpoint" if newest_ckpt is None else f"checkpoint at step {newest_ckpt}"
        run.message = error or f"no status.json; {reached} of {steps if steps else '?'} steps"


def _last_error(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").splitlines()[-50:]
    except OSError:
        return None
    for line in reversed(lines):
        _, sep, rest = line.partition("error: ")
        if sep:
            return rest.strip()
    return None


def _log_span(log: Path) -> float | None:
    """Seconds from the first to the last timestamped line of a Hydra job log."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    stamps = [m.group(1) for m in map(_LOG_TIME.match, lines) if m]
    if len(stamps) < 2:
        return None
    first, last = (_dt.datetime.fromisoformat(s) for s in (stamps[0], stamps[-1]))
    return (last - first).total_seconds()


def _str_or_none(value: Any) -> str | None:
    return None if value is None else " ".join(str(value).split())


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

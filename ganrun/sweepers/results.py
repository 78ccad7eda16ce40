"""What an Optuna search leaves in its sweep dir: ``trials.jsonl``, ``best.yaml``,
``study.json`` (metric, direction and search space, for readers without Optuna), and the
best trial printed as a ``ganrun train`` line (docs/SWEEPS.md, "The answer"). Each
file is written to a temporary name and renamed, so a reader (``ganrun report``)
never sees half of one."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import FrozenTrial, TrialState

STUDY_FILE = "optuna.journal"
TRIALS_FILE = "trials.jsonl"
BEST_FILE = "best.yaml"
SPACE_FILE = "study.json"


def _iso(t: _dt.datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    duration = (
        (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else None
    )
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value if t.state == TrialState.COMPLETE else None,
        "params": t.params,
        "overrides": t.user_attrs.get("overrides"),
        "run_dir": t.user_attrs.get("run_dir", str(t.number)),
        "status": t.user_attrs.get("status"),
        "message": t.user_attrs.get("message"),
        "started": _iso(t.datetime_start),
        "finished": _iso(t.datetime_complete),
        "seconds": round(duration, 1) if duration is not None else None,
    }


def command(overrides: list[str]) -> str:
    return " ".join(["ganrun", "train", *(shlex.quote(o) for o in overrides)])


def best_record(study, sweep_dir: Path, metric: str, direction: str) -> dict[str, Any] | None:
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        return None
    best = study.best_trial
    counts = {s.name.lower(): 0 for s in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)}
    for t in study.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    overrides = list(best.user_attrs.get("overrides") or [])
    return {
        "metric": metric,
        "direction": direction,
        "value": best.value,
        "number": best.number,
        "params": dict(best.params),
        "overrides": overrides,
        "command": command(overrides),
        "run_dir": best.user_attrs.get("run_dir", str(best.number)),
        "trials": {**counts, "total": len(study.trials)},
        "study": str(Path(sweep_dir) / STUDY_FILE),
    }


def study_record(study, metric: str, direction: str) -> dict[str, Any]:
    """The search's value and space: each parameter's Optuna distribution as JSON
    (``{"name": "FloatDistribution", "attributes": {...}}``)."""
    identity = study.user_attrs.get("ganrun_search") or {}
    space = {}
    for name, dist in (identity.get("space") or {}).items():
        space[name] = json.loads(dist) if isinstance(dist, str) else dist
    return {
        "study_name": study.study_name,
        "metric": metric,
        "direction": direction,
        "space": space,
    }


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_files(study, sweep_dir: Path, metric: str, direction: str) -> None:
    """trials.jsonl, study.json and best.yaml, each written whole and renamed into place."""
    sweep_dir = Path(sweep_dir)
    record = study_record(study, metric, direction)
    _atomic_write(sweep_dir / SPACE_FILE, json.dumps(record, indent=1) + "\n")
    lines = [json.dumps(trial_record(t)) for t in study.get_trials(deepcopy=False)]
    _atomic_write(sweep_dir / TRIALS_FILE, "".join(line + "\n" for line in lines))
    best = best_record(study, sweep_dir, metric, direction)
    if best is not None:
        text = yaml.safe_dump(best, sort_keys=False, width=10**6)  # the command on one line
        _atomic_write(sweep_dir / BEST_FILE, text)


def print_best(study, sweep_dir: Path, metric: str, direction: str) -> None:
    best = best_record(study, sweep_dir, metric, direction)
    states = [t.state for t in study.trials]
    summary = (
        f"{states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.FAIL)} failed"
    )
    if TrialState.RUNNING in states:
        summary += (
            f", {states.count(TrialState.RUNNING)} stopped: rerun the same command to finish them"
        )
    if best is None:
        print(
            f"ganrun: no trial of the search finished with a {metric} ({summary}); see {sweep_dir / TRIALS_FILE}"
        )
        return
    print(
        f"best trial {best['number']} of {len(states)} ({summary}): {metric}={best['value']:.6g} "
        f"({direction}); {sweep_dir / BEST_FILE}\n{best['command']}"
    )
    sys.stdout.flush()

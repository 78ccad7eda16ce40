"""The Optuna part of a report: what ganrun's sweeper left in a sweep dir
(``trials.jsonl``, ``best.yaml``, ``study.json``, ``optuna.journal``; docs/SWEEPS.md,
"The answer") as a trials table, the best trial and its command, the optimization
history and which parameters mattered.

Parameter importances are Optuna's (``optuna.importance.get_param_importances``,
its fANOVA evaluator) on the study, loaded from a *copy* of the journal so the
report never writes to (or locks) a study a search may still be running. Where
Optuna is not installed, the study holds fewer than two complete trials, or
Optuna's evaluator fails, a fallback computed from ``trials.jsonl`` is used and
labelled as such: |Spearman rank correlation| of a numeric parameter with the
value, and for a categorical one the spread of its choices' mean values (largest
minus smallest) over the spread of all values. Nothing here imports the sweeper.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ganrun.report.summary import DASH, duration, number
from ganrun.report.tables import Cell, Column, slug

TRIALS_FILE = "trials.jsonl"
BEST_FILE = "best.yaml"
STUDY_FILE = "optuna.journal"
SPACE_FILE = "study.json"
MARKERS = (TRIALS_FILE, BEST_FILE, STUDY_FILE)

OPTUNA = "Optuna fANOVA (optuna.importance.get_param_importances)"
SPEARMAN = "fallback: |Spearman rank correlation| with the value"
SPREAD = "fallback: spread of the choices' mean values / spread of all values"


@dataclass
class Importance:
    param: str
    value: float | None  # None: not enough trials to say
    method: str
    note: str | None = None


@dataclass
class Search:
    folder: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    metric: str | None
    direction: str | None  # "minimize" / "maximize"
    space: dict[str, dict[str, Any]]  # name -> Optuna's distribution as JSON (may be empty)
    params: list[str]  # searched parameter names, in the study's order
    importances: list[Importance] = field(default_factory=list)
    importance_note: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t.get("state") == "COMPLETE" and _finite(t.get("value"))]

    def counts(self) -> str:
        by: dict[str, int] = {}
        for t in self.trials:
            by[str(t.get("state", "?")).lower()] = by.get(str(t.get("state", "?")).lower(), 0) + 1
        return ", ".join(f"{n} {s}" for s, n in by.items()) or "no trials"


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------- finding, reading
def is_search_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in MARKERS)


def find_search_dirs(dirs: list[str | Path]) -> list[Path]:
    """Each given folder that is a sweep dir of an Optuna search, or holds some."""
    found: list[Path] = []
    for given in dirs:
        path = Path(given).expanduser().resolve()
        if not path.is_dir():
            continue
        for root, subdirs, _ in os.walk(path):
            here = Path(root)
            if is_search_dir(here):
                if here not in found:
                    found.append(here)
                subdirs[:] = []  # its job dirs are trials, not searches
                continue
            if (here / ".hydra").is_dir() or (here / "status.json").is_file():
                subdirs[:] = []  # a run dir
                continue
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    return found


def read_search(folder: Path) -> Search:
    folder = Path(folder)
    notes: list[str] = []
    trials = _read_trials(folder, notes)
    best = _read_yaml(folder / BEST_FILE, notes)
    study_info = _read_json(folder / SPACE_FILE, notes)
    study = _load_study(folder, notes) if (folder / STUDY_FILE).is_file() else None
    identity = (study.user_attrs.get("ganrun_search") or {}) if study is not None else {}
    if not trials and study is not None:  # a study without trials.jsonl (an older sweeper)
        trials = [_trial_record(t) for t in study.trials]
    metric = _first(study_info.get("metric"), (best or {}).get("metric"), identity.get("metric"))
    direction = _first(
        study_info.get("direction"),
        (best or {}).get("direction"),
        identity.get("direction"),
        study.direction.name.lower() if study is not None else None,
    )
    space = _space(study_info.get("space") or identity.get("space") or {})
    params = list(space)
    for t in trials:
        params += [k for k in (t.get("params") or {}) if k not in params]
    search = Search(folder, trials, best, metric, direction, space, params, notes=notes)
    if best is None and direction in ("minimize", "maximize") and search.complete:
        # no best.yaml (an older sweeper, or removed): the best complete trial, no command
        pick = max if direction == "maximize" else min
        t = pick(search.complete, key=lambda t: float(t["value"]))
        search.best = {
            "metric": metric,
            "direction": direction,
            "value": t["value"],
            "number": t.get("number"),
            "run_dir": t.get("run_dir"),
            "from_trials": True,
        }
    search.importances, search.importance_note = importances(search, study)
    return search


def _space(space: Any) -> dict[str, dict[str, Any]]:
    """name -> distribution as a dict (the study stores each as Optuna's JSON text)."""
    out: dict[str, dict[str, Any]] = {}
    for name, dist in space.items() if isinstance(space, dict) else []:
        if isinstance(dist, str):
            try:
                dist = json.loads(dist)
            except json.JSONDecodeError:
                dist = {}
        out[str(name)] = dist if isinstance(dist, dict) else {}
    return out


def _first(*values):
    return next((v for v in values if v), None)


def _read_trials(folder: Path, notes: list[str]) -> list[dict[str, Any]]:
    path = folder / TRIALS_FILE
    if not path.is_file():
        return []
    trials = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        notes.append(f"cannot read {path}: {e.strerror or e}")
        return []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            notes.append(f"{path.name} line {i} is not JSON; left out")
            continue
        if isinstance(record, dict):
            trials.append(record)
    return trials


def _read_yaml(path: Path, notes: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        notes.append(f"cannot read {path.name}: {str(e).splitlines()[0]}")
        return None
    return data if isinstance(data, dict) else None


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        notes.append(f"cannot read {path.name}: {str(e).splitlines()[0]}")
        return {}
    return data if isinstance(data, dict) else {}


def _load_study(folder: Path, notes: list[str]):
    """The study, from a copy of its journal (never the search's own file), or None."""
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="ganrun-report-") as tmp:
        copy = Path(tmp) / STUDY_FILE
        try:
            shutil.copyfile(folder / STUDY_FILE, copy)
            storage = JournalStorage(JournalFileBackend(str(copy)))
            names = [s.study_name for s in storage.get_all_studies()]
            if not names:
                notes.append(f"{STUDY_FILE} holds no study")
                return None
            name = "ganrun" if "ganrun" in names else names[0]
            study = optuna.load_study(study_name=name, storage=storage)
            # everything read now: the copy goes with the temporary folder
            _ = study.trials, study.user_attrs, study.direction
            return _InMemory(study)
        except Exception as e:  # a torn or foreign journal: report without it
            notes.append(f"cannot load {STUDY_FILE}: {type(e).__name__}: {e}")
            return None


class _InMemory:
    """A study's trials, attributes and direction, read once, and the study itself
    re-created in memory (for Optuna's importance evaluators)."""

    def __init__(self, study):
        import optuna

        self.trials = study.get_trials(deepcopy=True)
        self.user_attrs = dict(study.user_attrs)
        self.direction = study.direction
        self.study = optuna.create_study(direction=study.direction)
        self.study.add_trials([t for t in self.trials if t.state.name == "COMPLETE"])


def _trial_record(t) -> dict[str, Any]:
    complete = t.state.name == "COMPLETE"
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value if complete else None,
        "params": dict(t.params),
        "run_dir": t.user_attrs.get("run_dir", str(t.number)),
        "status": t.user_attrs.get("status"),
        "message": t.user_attrs.get("message"),
        "seconds": (
            round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
            if t.datetime_complete and t.datetime_start
            else None
        ),
    }


# --------------------------------------------------------------------------- importances
def importances(search: Search, study) -> tuple[list[Importance], str]:
    """Optuna's where it can say, else the fallback; with one line on which."""
    n = len(search.complete)
    why = ""
    if study is None:
        why = "Optuna is not installed" if not _has_optuna() else f"no readable {STUDY_FILE}"
    elif sum(t.state.name == "COMPLETE" for t in study.trials) < 2:
        why = f"the study holds {n} complete trial(s), Optuna needs 2"
    else:
        try:
            from optuna.importance import FanovaImportanceEvaluator, get_param_importances

            # seeded: fANOVA's forest is random, and a report should not change when rerun
            got = get_param_importances(study.study, evaluator=FanovaImportanceEvaluator(seed=0))
            result = [Importance(p, float(got[p]), OPTUNA) for p in search.params if p in got]
            result += [
                Importance(p, None, OPTUNA, "not in every complete trial")
                for p in search.params
                if p not in got
            ]
            result.sort(key=lambda i: (i.value is None, -(i.value or 0.0)))
            return result, (
                f"Optuna's fANOVA importances over {n} complete trial(s): each parameter's share "
                "of the value's variance (they sum to 1)."
            )
        except Exception as e:
            why = f"Optuna's importances failed ({type(e).__name__}: {e})"
    result = fallback_importances(search.trials, search.params, search.space)
    return result, (
        f"Computed from {TRIALS_FILE} over {n} complete trial(s), because {why}: "
        "|Spearman rank correlation| of each numeric parameter with the value, and for a "
        "categorical one the spread of its choices' mean values over the spread of all values "
        "(0: no visible effect, 1: strongest). Not Optuna's importances."
    )


def _has_optuna() -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


def _categorical(param: str, values: list[Any], space: dict[str, dict[str, Any]]) -> bool:
    dist = space.get(param) or {}
    name = str(dist.get("name", ""))
    if name:
        return name.startswith("Categorical")
    return not all(_finite(v) for v in values)


def fallback_importances(
    trials: list[dict[str, Any]], params: list[str], space: dict[str, dict[str, Any]] | None = None
) -> list[Importance]:
    """Per parameter, from the complete trials with a finite value (see the module doc)."""
    space = space or {}
    done = [
        t
        for t in trials
        if t.get("state") == "COMPLETE"
        and _finite(t.get("value"))
        and isinstance(t.get("params"), dict)
    ]
    result = []
    for p in params:
        rows = [(t["params"][p], float(t["value"])) for t in done if p in t["params"]]
        xs = [x for x, _ in rows]
        ys = [y for _, y in rows]
        categorical = _categorical(p, xs, space)
        method = SPREAD if categorical else SPEARMAN
        if len(rows) < 2:
            result.append(Importance(p, None, method, f"{len(rows)} complete trial(s)"))
        elif len({repr(x) for x in xs}) < 2:
            result.append(Importance(p, None, method, "one value in all complete trials"))
        elif max(ys) == min(ys):
            result.append(Importance(p, 0.0, method, "every complete trial has the same value"))
        elif categorical:
            groups: dict[str, list[float]] = {}
            for x, y in rows:
                groups.setdefault(repr(x), []).append(y)
            means = [statistics.fmean(v) for v in groups.values()]
            result.append(Importance(p, (max(means) - min(means)) / (max(ys) - min(ys)), method))
        else:
            rho = spearman([float(x) for x in xs], ys)
            result.append(Importance(p, abs(rho), method))
    result.sort(key=lambda i: (i.value is None, -(i.value or 0.0)))
    return result


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their mean rank
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on the ranks, ties averaged); 0 where
    either side is constant."""
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return 0.0 if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


# --------------------------------------------------------------------------- tables
def _param_text(v: Any) -> tuple[str, float | str | None]:
    if _finite(v):
        return number(float(v)), float(v)
    return (DASH, None) if v is None else (str(v), str(v))


def trials_table(search: Search) -> tuple[list[Column], list[list[Cell]]]:
    cols = [Column("trial", "trial", True), Column("state", "state")]
    cols.append(Column("value", search.metric or "value", True))
    for p in search.params:
        values = [(t.get("params") or {}).get(p) for t in search.trials]
        numeric = all(_finite(v) for v in values if v is not None)
        cols.append(Column(slug(f"param {p}"), p, numeric))
    cols += [
        Column("run-dir", "run dir"),
        Column("seconds", "time", True),
        Column("message", "message"),
    ]
    best = (search.best or {}).get("number")
    rows = []
    for t in search.trials:
        value = t.get("value")
        state = str(t.get("state", "?"))
        mark = " (best)" if t.get("number") == best and best is not None else ""
        row = [
            Cell(str(t.get("number", DASH)), t.get("number")),
            Cell(state + mark, state),
            Cell(
                number(value) if _finite(value) else DASH,
                value if _finite(value) else None,
                None if value is None else repr(value),
            ),
        ]
        for p in search.params:
            v = (t.get("params") or {}).get(p)
            text, key = _param_text(v)
            row.append(Cell(text, key, None if v is None else repr(v)))
        seconds = t.get("seconds")
        row += [
            Cell(str(t.get("run_dir") or DASH), t.get("run_dir")),
            Cell(duration(seconds), seconds if _finite(seconds) else None),
            Cell(str(t.get("message") or ""), t.get("message") or None),
        ]
        rows.append(row)
    return cols, rows


def importance_table(search: Search) -> tuple[list[Column], list[list[Cell]]]:
    cols = [
        Column("parameter", "parameter"),
        Column("importance", "importance", True),
        Column("method", "method"),
    ]
    rows = []
    for imp in search.importances:
        text = number(imp.value, 3) if imp.value is not None else DASH
        if imp.note:
            text += f" ({imp.note})"
        rows.append(
            [Cell(imp.param, imp.param), Cell(text, imp.value), Cell(imp.method, imp.method)]
        )
    return cols, rows


def best_text(search: Search) -> str:
    best = search.best
    if not best:
        if search.complete:  # complete trials, but neither best.yaml nor a direction
            return (
                f"No {BEST_FILE} and no known direction: no best trial named ({search.counts()})."
            )
        return f"No trial has finished with a {search.metric or 'value'} yet ({search.counts()})."
    value = best.get("value")
    shown = number(value) if _finite(value) else str(value)
    text = (
        f"Best trial {best.get('number')}: {best.get('metric') or search.metric}={shown} "
        f"({best.get('direction') or search.direction}), run dir `{best.get('run_dir')}`."
    )
    if best.get("from_trials"):
        text += f" (From {TRIALS_FILE}: the sweep dir has no {BEST_FILE} with its command.)"
    return text


def history_file(index: int, n: int) -> str:
    return "report-optuna-history.png" if n == 1 else f"report-optuna-history-{index + 1}.png"


# --------------------------------------------------------------------------- history plot
def plot_history(search: Search) -> bytes:
    """Value per trial number, the best-so-far line, failed (and running) trials marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    ax = fig.add_subplot()
    done = sorted(
        (
            (int(t["number"]), float(t["value"]))
            for t in search.complete
            if _finite(t.get("number"))
        ),
    )
    if done:
        xs, ys = zip(*done)
        ax.plot(xs, ys, "o", color="C0", label=f"complete ({len(done)})")
        better = max if search.direction == "maximize" else min
        best, line = None, []
        for y in ys:
            best = y if best is None else better(best, y)
            line.append(best)
        ax.step(xs, line, where="post", color="C1", label="best so far")
    for state, marker, color in (("FAIL", "x", "C3"), ("RUNNING", "s", "C7")):
        numbers = [
            int(t["number"])
            for t in search.trials
            if t.get("state") == state and _finite(t.get("number"))
        ]
        if numbers:
            # at the bottom of the axes: a failed trial has no value to place it by
            ax.plot(
                numbers,
                [0.03] * len(numbers),
                marker,
                color=color,
                markersize=9,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                label=f"{state.lower()} ({len(numbers)})",
            )
    ax.set_xlabel("trial")
    ax.set_ylabel(search.metric or "value")
    direction = f" ({search.direction})" if search.direction else ""
    ax.set_title(f"optimization history: {search.metric or 'value'}{direction}")
    ax.grid(True, alpha=0.3)
    if search.trials:
        ax.set_xlim(-0.5, max(int(t.get("number", 0)) for t in search.trials) + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()

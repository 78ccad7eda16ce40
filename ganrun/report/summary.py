"""From runs to tables: the scores, the overrides that vary, seed groups and
their mean ± standard error.

Runs whose overrides are equal once ``seed`` is left out form a group. A group's
statistics are over its *finished* runs (a failed, diverged, killed or still
running one is listed, not averaged): mean ± s.e. with s.e. = sample standard
deviation / √n, as docs/RESULTS.md reports; a group of one shows its value alone.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from ganrun.report.runs import FINISHED, Point, Run, override_key

SEED = "seed"
DASH = "—"


@dataclass
class Stat:
    mean: float
    se: float | None  # None for n = 1, or when a value is not finite
    n: int

    def text(self) -> str:
        if self.se is None:
            return number(self.mean, 3)
        return f"{number(self.mean, 3)} ± {number(self.se, 2)}"


def mean_se(values: list[float]) -> Stat | None:
    if not values:
        return None
    if not all(math.isfinite(v) for v in values):
        finite_mean = math.fsum(values) / len(values)  # inf, -inf or nan, as IEEE says
        return Stat(finite_mean, None, len(values))
    mean = math.fsum(values) / len(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return Stat(mean, se, len(values))


@dataclass
class Group:
    overrides: tuple[str, ...]  # every override but seed (the first run's order)
    label: str  # the varying ones (without seed)
    runs: list[Run] = field(default_factory=list)

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.status == FINISHED]

    def stat(self, score: str, which: str) -> Stat | None:
        """``which``: "final" or "best", over the finished runs that have the score."""
        points = [getattr(r, which)(score) for r in self.finished]
        return mean_se([p.value for p in points if p is not None])

    @property
    def seeds(self) -> str:
        return ", ".join(DASH if r.seed is None else str(r.seed) for r in self.runs)


@dataclass
class Summary:
    runs: list[Run]
    scores: list[str]  # in order of first appearance
    common: list[str]  # overrides every run has, with the same value
    varying: list[str]  # override keys whose value differs between runs
    groups: list[Group]

    def value(self, run: Run, key: str) -> str:
        for o in run.overrides:
            if override_key(o) == key:
                return o.split("=", 1)[1] if "=" in o else o
        return DASH

    def varying_text(self, run: Run, with_seed: bool = True) -> str:
        keys = [k for k in self.varying if with_seed or k != SEED]
        return " ".join(o for o in run.overrides if override_key(o) in keys)

    def group_of(self, run: Run) -> Group:
        return next(g for g in self.groups if run in g.runs)

    @property
    def grouped(self) -> bool:
        """Whether any group holds more than one run (else the group table says nothing new)."""
        return any(len(g.runs) > 1 for g in self.groups)

    @property
    def not_finished(self) -> list[Run]:
        return [r for r in self.runs if r.status != FINISHED]


def summarize(runs: list[Run]) -> Summary:
    scores: list[str] = []
    for run in runs:
        scores.extend(s for s in run.history if s not in scores)

    keys: list[str] = []
    for run in runs:
        keys.extend(override_key(o) for o in run.overrides if override_key(o) not in keys)
    texts = [{override_key(o): o for o in run.overrides} for run in runs]
    varying = [k for k in keys if len({t.get(k) for t in texts}) > 1]
    common = [texts[0][k] for k in keys if k not in varying] if runs else []

    groups: dict[tuple[str, ...], Group] = {}
    for run in runs:
        key = tuple(sorted(o for o in run.overrides if override_key(o) != SEED))
        if key not in groups:
            label = " ".join(
                o for o in run.overrides if override_key(o) in varying and override_key(o) != SEED
            )
            rest = tuple(o for o in run.overrides if override_key(o) != SEED)
            groups[key] = Group(rest, label or "all runs")
        groups[key].runs.append(run)
    return Summary(runs, scores, common, varying, list(groups.values()))


# --------------------------------------------------------------------------- formatting
def number(x: float | None, digits: int = 4) -> str:
    if x is None:
        return DASH
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.{digits}g}"


def point_text(p: Point | None) -> str:
    return DASH if p is None else number(p.value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def steps_text(run: Run) -> str:
    if run.step is None and run.steps is None:
        return DASH
    return f"{DASH if run.step is None else run.step} / {DASH if run.steps is None else run.steps}"

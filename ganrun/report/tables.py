"""The two tables of a report (runs; seed groups) as columns and cells, rendered
by the Markdown and HTML writers alike; and the CSV rows, at full precision."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ganrun.report.summary import (
    DASH,
    SEED,
    Stat,
    Summary,
    duration,
    number,
    point_text,
)


@dataclass
class Column:
    key: str  # a slug: report.html?sort=<key>
    title: str
    numeric: bool = False


@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # the sort key; None sorts last
    title: str | None = None  # a tooltip (e.g. the step of a best value)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _num(x: float | None, text: str | None = None, title: str | None = None) -> Cell:
    return Cell(number(x) if text is None else text, None if x is None else x, title)


def run_table(summary: Summary) -> tuple[list[Column], list[list[Cell]]]:
    keys = [k for k in summary.varying if k != SEED]
    cols = [Column("run", "run")]
    cols += [Column(slug(k), k) for k in keys]
    cols += [
        Column("seed", "seed", True),
        Column("status", "status"),
        Column("step", "step", True),
        Column("steps", "steps", True),
        Column("wall", "wall time", True),
    ]
    for score in summary.scores:
        cols += [
            Column(slug(f"final {score}"), f"final {score}", True),
            Column(slug(f"best {score}"), f"best {score}", True),
        ]
    rows = []
    for run in summary.runs:
        row = [Cell(run.label, run.label, str(run.path))]
        row += [Cell(v, v) for v in (summary.value(run, k) for k in keys)]
        row += [
            _num(run.seed),
            Cell(run.status, run.status, run.message),
            _num(run.step),
            _num(run.steps),
            _num(run.wall_seconds, duration(run.wall_seconds)),
        ]
        for score in summary.scores:
            final, best = run.final(score), run.best(score)
            row.append(
                _num(final and final.value, point_text(final), final and f"step {final.step}")
            )
            row.append(_num(best and best.value, point_text(best), best and f"step {best.step}"))
        rows.append(row)
    return cols, rows


def _stat(stat: Stat | None) -> Cell:
    if stat is None:
        return Cell(DASH)
    return Cell(stat.text(), stat.mean, f"n={stat.n}")


def group_table(summary: Summary) -> tuple[list[Column], list[list[Cell]]]:
    cols = [
        Column("group", "group"),
        Column("n", "n", True),
        Column("runs", "runs", True),
        Column("seeds", "seeds"),
        Column("wall-run", "wall / run", True),
    ]
    for score in summary.scores:
        cols += [
            Column(slug(f"final {score}"), f"final {score}", True),
            Column(slug(f"best {score}"), f"best {score}", True),
        ]
    rows = []
    for group in summary.groups:
        walls = [r.wall_seconds for r in group.finished if r.wall_seconds is not None]
        wall = sum(walls) / len(walls) if walls else None
        row = [
            Cell(group.label, group.label),
            _num(len(group.finished)),
            _num(len(group.runs), title=", ".join(r.label for r in group.runs)),
            Cell(group.seeds, group.seeds),
            _num(wall, duration(wall)),
        ]
        for score in summary.scores:
            row += [_stat(group.stat(score, "final")), _stat(group.stat(score, "best"))]
        rows.append(row)
    return cols, rows


# --------------------------------------------------------------------------- CSV
def _full(x: float | int | None) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return repr(x) if isinstance(x, float) else str(x)


def csv_runs(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """One row per run; score columns ``<score>.final``, ``<score>.final_step``,
    ``<score>.best``, ``<score>.best_step``; each varying override its own column."""
    fixed = [
        "run",
        "path",
        "group",
        "status",
        "message",
        "step",
        "steps",
        "wall_seconds",
        "seed",
        "overrides",
    ]
    keys = [k for k in summary.varying if k != SEED and k not in fixed]
    header = fixed + keys
    for score in summary.scores:
        header += [f"{score}.{x}" for x in ("final", "final_step", "best", "best_step")]
    rows = []
    for run in summary.runs:
        row = [
            run.label,
            str(run.path),
            summary.group_of(run).label,
            run.status,
            run.message or "",
            _full(run.step),
            _full(run.steps),
            _full(run.wall_seconds),
            _full(run.seed),
            " ".join(run.overrides),
        ]
        row += ["" if (v := summary.value(run, k)) == DASH else v for k in keys]
        for score in summary.scores:
            final, best = run.final(score), run.best(score)
            row += [
                _full(final and final.value),
                _full(final and final.step),
                _full(best and best.value),
                _full(best and best.step),
            ]
        rows.append(row)
    return header, rows


def csv_groups(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """One row per seed group: ``<score>.final_mean``, ``.final_se``, ``.best_mean``,
    ``.best_se`` and ``.n`` (finished runs that have the score)."""
    header = ["group", "runs", "finished", "seeds", "overrides"]
    for score in summary.scores:
        header += [f"{score}.{x}" for x in ("final_mean", "final_se", "best_mean", "best_se", "n")]
    rows = []
    for group in summary.groups:
        row = [
            group.label,
            str(len(group.runs)),
            str(len(group.finished)),
            group.seeds,
            " ".join(group.overrides),
        ]
        for score in summary.scores:
            final, best = group.stat(score, "final"), group.stat(score, "best")
            row += [
                _full(final and final.mean),
                _full(final and final.se),
                _full(best and best.mean),
                _full(best and best.se),
                str(final.n if final else 0),
            ]
        rows.append(row)
    return header, rows

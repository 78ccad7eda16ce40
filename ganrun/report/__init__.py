"""``ganrun report``: what a sweep's run dirs say, at a glance.

Reads run dirs (``ganrun.report.runs``), groups runs that differ only in their
seed (``summary``), and writes into one folder:

* ``report.md``: the seed-group table (mean ± s.e., n), the run table, the runs
  that did not finish with their one-line message, the plots;
* ``report.csv`` (one row per run, full precision) and ``report_groups.csv``;
* ``report-<score>.png``: each score over kimg (``plots``);
* ``report.html``: the same, self-contained (``page``).

For the sweep dir of an Optuna search (``trials.jsonl``, ``best.yaml`` or
``optuna.journal`` in it) the report adds the trials table, the best trial and
its command, ``report-optuna-history.png`` and which parameters mattered
(``search``).

Everything is computed before the first file is written, and each file is
written to a temporary name and renamed, so bad input writes nothing and an
interrupted report leaves no half-written file. The report knows no model
names and imports nothing from the training loop.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import os
from collections import Counter
from pathlib import Path

from ganrun.errors import ConfigError
from ganrun.report.plots import file_name, plot_score
from ganrun.report.runs import Run, read_runs
from ganrun.report.search import (
    Search,
    best_text,
    find_search_dirs,
    history_file,
    importance_table,
    plot_history,
    read_search,
    trials_table,
)
from ganrun.report.summary import Summary, summarize
from ganrun.report.tables import Cell, Column, csv_groups, csv_runs, group_table, run_table

__all__ = ["write_report", "read_runs", "summarize"]

TITLE = "ganrun report"


def output_folder(dirs: list[str], out: str | None) -> Path:
    if out:
        folder = Path(out).expanduser()
    elif len(dirs) == 1:
        folder = Path(dirs[0]).expanduser()
    else:
        raise ConfigError(f"{len(dirs)} folders given: say where the report goes with out=<folder>")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"out={folder} is a file: give a folder for the report")
    return folder


def status_counts(runs: list[Run]) -> str:
    counts = Counter(r.status for r in runs)
    return ", ".join(f"{n} {status}" for status, n in counts.most_common())


def write_report(dirs: list[str], out: str | None = None) -> tuple[list[Path], Summary]:
    """Write the report of the runs in ``dirs``; return the files written and
    what they summarize."""
    dirs = [str(d) for d in dirs]
    runs = read_runs(dirs)
    folder = output_folder(dirs, out)
    summary = summarize(runs)
    searches = [read_search(d) for d in find_search_dirs(dirs)]
    when = _dt.datetime.now().isoformat(timespec="seconds")
    meta = (
        f"{len(runs)} run(s) in {', '.join(dirs)}: {status_counts(runs)}; "
        f"{len(summary.groups)} group(s). Written {when} by ganrun report."
    )
    plots = {score: plot_score(summary, score) for score in summary.scores}
    histories = {history_file(i, len(searches)): plot_history(s) for i, s in enumerate(searches)}
    samples: dict[str, bytes] = {}
    for run in runs:
        if run.sample is not None:
            try:
                samples[run.label] = run.sample.read_bytes()
            except OSError:
                run.notes.append(f"cannot read {run.sample}")
    files: dict[str, bytes] = {
        "report.md": markdown(summary, meta, plots, searches).encode(),
        "report.csv": _csv(*csv_runs(summary)),
        "report_groups.csv": _csv(*csv_groups(summary)),
        **{file_name(score): png for score, png in plots.items()},
        **histories,
        "report.html": _html(summary, meta, plots, samples, searches, histories),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create out={folder}: {e.strerror or e}") from None
    return [atomic_write(folder / name, data) for name, data in files.items()], summary


def _html(
    summary: Summary,
    meta: str,
    plots: dict,
    samples: dict,
    searches: list[Search],
    histories: dict[str, bytes],
) -> bytes:
    from ganrun.report.page import render

    return render(summary, TITLE, meta, plots, samples, searches, list(histories.values())).encode()


def atomic_write(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


# --------------------------------------------------------------------------- Markdown
def _md_table(columns: list[Column], rows: list[list[Cell]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c.title) for c in columns) + " |"]
    lines.append("| " + " | ".join("---:" if c.numeric else "---" for c in columns) + " |")
    lines += ["| " + " | ".join(cell(c.text) for c in row) + " |" for row in rows]
    return lines


def search_heading(search: Search, n: int) -> str:
    return "Optuna search" + (f": {search.folder.name}" if n > 1 else "")


def search_meta(search: Search) -> str:
    direction = f" ({search.direction})" if search.direction else ""
    return (
        f"Study in `{search.folder}`: {len(search.trials)} trial(s), {search.counts()}; "
        f"value: `{search.metric or 'unknown'}`{direction}."
    )


def _md_search(search: Search, n: int, history: str) -> list[str]:
    lines = [f"## {search_heading(search, n)}", "", search_meta(search), "", best_text(search), ""]
    if search.best and search.best.get("command"):
        lines += ["```bash", str(search.best["command"]), "```", ""]
    lines += ["### Trials", "", *_md_table(*trials_table(search)), ""]
    lines += ["### Optimization history", "", f"![optimization history]({history})", ""]
    lines += ["### Which parameters mattered", "", search.importance_note, ""]
    lines += [*_md_table(*importance_table(search)), ""]
    if search.notes:
        lines += [f"- {note}" for note in search.notes] + [""]
    return lines


def markdown(
    summary: Summary, meta: str, plots: dict[str, bytes], searches: list[Search] = ()
) -> str:
    lines = [f"# {TITLE}", "", meta, ""]
    if summary.common:
        lines += [f"Overrides common to all runs: `{' '.join(summary.common)}`", ""]
    for i, search in enumerate(searches):
        lines += _md_search(search, len(searches), history_file(i, len(searches)))
    if summary.grouped:
        lines += [
            "## Seed groups",
            "",
            "Runs whose overrides differ only in `seed`: mean ± standard error over each "
            "group's finished runs (s.e. = sample standard deviation / √n; a group of one "
            "shows its value).",
            "",
            *_md_table(*group_table(summary)),
            "",
        ]
    lines += ["## Runs", "", *_md_table(*run_table(summary)), ""]
    if summary.not_finished:
        lines += ["## Runs that did not finish", ""]
        for run in summary.not_finished:
            why = f": {run.message}" if run.message else ""
            lines.append(f"- `{run.label}` ({run.status}){why}")
        lines.append("")
    notes = [(run, note) for run in summary.runs for note in run.notes]
    if notes:
        lines += ["## Notes", ""]
        lines += [f"- `{run.label}`: {note}" for run, note in notes]
        lines.append("")
    if plots:
        lines += ["## Scores over training", ""]
        lines += [f"![{score}]({file_name(score)})" for score in plots]
        lines.append("")
    return "\n".join(lines)

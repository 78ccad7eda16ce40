"""One PNG per score over kimg (thousands of real images D has seen).

A group of one run is drawn as that run's line; a seed group of several as the
mean over its runs at each evaluation step with a ±1 standard-error band (the
runs that reached the step; non-finite values are left out). Matplotlib runs on
its Agg backend, so no display is needed.
"""

from __future__ import annotations

import io
import math
import re
import statistics

from ganrun.report.runs import Run
from ganrun.report.summary import Summary

MAX_LEGEND = 12  # more lines than this get no legend: it would hide the plot


def file_name(score: str) -> str:
    """``fid[mnist-classifier]`` -> ``report-fid-mnist-classifier.png``."""
    return "report-" + (re.sub(r"[^A-Za-z0-9._]+", "-", score).strip("-") or "score") + ".png"


def _series(run: Run, score: str, use_kimg: bool) -> dict[int, tuple[float, float]]:
    """step -> (x, value) of the run's finite values."""
    return {
        p.step: (p.kimg if use_kimg else p.step, p.value)
        for p in run.history.get(score, [])
        if math.isfinite(p.value)
    }


def plot_score(summary: Summary, score: str) -> bytes:
    """The PNG of one score, as bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    points = [p for r in summary.runs for p in r.history.get(score, [])]
    use_kimg = all(p.kimg is not None for p in points)
    fig = Figure(figsize=(7, 4.2), dpi=100)
    ax = fig.add_subplot()
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    line = 0
    for group in summary.groups:
        series = [(r, _series(r, score, use_kimg)) for r in group.runs]
        series = [(r, s) for r, s in series if s]
        if not series:
            continue
        color = colors[line % len(colors)]
        line += 1
        if len(series) == 1:
            run, s = series[0]
            label = summary.varying_text(run) or run.label
            xs, ys = zip(*(s[k] for k in sorted(s)))
            ax.plot(xs, ys, marker="o", markersize=3, color=color, label=label)
            continue
        steps = sorted({k for _, s in series for k in s})
        xs, means, lo, hi = [], [], [], []
        for k in steps:
            at = [s[k] for _, s in series if k in s]
            values = [v for _, v in at]
            mean = statistics.fmean(values)
            se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
            xs.append(statistics.fmean(x for x, _ in at))
            means.append(mean)
            lo.append(mean - se)
            hi.append(mean + se)
        label = f"{group.label} (mean ± s.e., n={len(series)})"
        ax.plot(xs, means, marker="o", markersize=3, color=color, label=label)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("kimg" if use_kimg else "step")
    ax.set_ylabel(score)
    ax.set_title(score)
    ax.grid(True, alpha=0.3)
    if 0 < line <= MAX_LEGEND:
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()

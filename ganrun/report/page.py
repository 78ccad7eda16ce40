"""report.html: one self-contained file (no CDN, no external file), so it can be
mailed or opened offline from a cluster's share.

Tables sort by any column on a click on its header (numbers as numbers, missing
values last). ``report.html?sort=<column key>&desc=1&table=<runs|groups>``
sorts on load: a link can point at a ranking, and the tests use it. Plots and
each run's newest sample grid are embedded as base64 ``data:`` URIs. Once the
page has loaded, ``<body data-images="<decoded>/<total>">`` says how many of
its images the browser decoded.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from ganrun.report.search import Search, best_text, importance_table, trials_table
from ganrun.report.summary import Summary
from ganrun.report.tables import Cell, Column, group_table, run_table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #555; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
.status { border-radius: 3px; padding: 0 0.4em; }
.s-finished { background: #d8f0d8; } .s-running { background: #d8e4f8; }
.s-failed, .s-diverged, .s-killed { background: #f8d8d8; }
.s-stopped-early, .s-unfinished { background: #f8ecd0; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figcaption { font-size: 0.85em; color: #444; max-width: 360px; }
img.sample { max-width: 256px; image-rendering: pixelated; border: 1px solid #ddd; }
img.plot { max-width: 700px; }
.scroll { overflow-x: auto; }
code { background: #f4f4f4; padding: 0 0.2em; }
pre.command { background: #f4f4f4; padding: 0.5em; white-space: pre-wrap; word-break: break-all; }
table[id^=trials] td:last-child { white-space: normal; min-width: 24em; }
tr.fail td { background: #fbeaea; } tr.best td { background: #e4f4e4; }
"""

SCRIPT = """
(function () {
  function key(td, numeric) {
    var v = td.getAttribute('data-v');
    if (v === null || v === '') return null;
    if (!numeric) return v.toLowerCase();
    var f = parseFloat(v);
    return isNaN(f) ? null : f;
  }
  function sortTable(table, index, desc) {
    var heads = table.tHead.rows[0].cells, th = heads[index];
    var numeric = th.getAttribute('data-type') === 'num';
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
      var c = numeric ? (x < y ? -1 : (x > y ? 1 : 0))
                      : x.localeCompare(y, undefined, {numeric: true});
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute('aria-sort');
    th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
  }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener('click', function () {
        sortTable(table, i, th.getAttribute('aria-sort') === 'ascending');
      });
    });
  });
  var q = new URLSearchParams(window.location.search);
  if (q.get('sort')) {
    var table = document.getElementById(q.get('table') || 'runs');
    var th = table && table.querySelector('th[data-key="' + q.get('sort') + '"]');
    if (th) sortTable(table, th.cellIndex, q.get('desc') === '1');
    document.body.setAttribute('data-sorted', th ? q.get('sort') : 'no such column');
  }
  window.addEventListener('load', function () {
    var images = document.images, ok = 0;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete && images[i].naturalWidth > 0) ok++;
    }
    document.body.setAttribute('data-images', ok + '/' + images.length);
  });
})();
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(
    table_id: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    row_classes: Sequence[str] | None = None,
) -> str:
    e = html.escape
    head = "".join(
        f'<th data-key="{e(c.key)}" data-type="{"num" if c.numeric else "text"}">{e(c.title)}</th>'
        for c in columns
    )
    body = []
    for i, row in enumerate(rows):
        cells = []
        for col, cell in zip(columns, row):
            attrs = f' data-v="{e(str(cell.sort))}"' if cell.sort is not None else ""
            attrs += f' title="{e(cell.title)}"' if cell.title else ""
            attrs += ' class="num"' if col.numeric else ""
            text = e(cell.text)
            if col.key == "status":
                text = f'<span class="status s-{e(cell.text.replace(" ", "-"))}">{text}</span>'
            cells.append(f"<td{attrs}>{text}</td>")
        cls = row_classes[i] if row_classes and row_classes[i] else ""
        body.append((f'<tr class="{e(cls)}">' if cls else "<tr>") + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _search(search: Search, index: int, n: int, history: bytes) -> list[str]:
    from ganrun.report import search_heading, search_meta

    e = html.escape
    suffix = "" if n == 1 else f"-{index + 1}"
    best = (search.best or {}).get("number")
    classes = [
        "best" if t.get("number") == best and best is not None
        else ("fail" if t.get("state") == "FAIL" else "")
        for t in search.trials
    ]  # fmt: skip
    parts = [
        f'<section class="search" id="search{suffix}">',
        f"<h2>{e(search_heading(search, n))}</h2>",
        f"<p>{_code(search_meta(search))}</p>",
        f'<p id="best{suffix}">{_code(best_text(search))}</p>',
    ]
    if search.best and search.best.get("command"):
        parts.append(f'<pre class="command">{e(str(search.best["command"]))}</pre>')
    parts += [
        "<h3>Trials</h3>",
        _table(f"trials{suffix}", *trials_table(search), classes),
        "<h3>Optimization history</h3>",
        f'<figure><img class="plot" alt="optimization history" src="{data_uri(history)}"></figure>',
        "<h3>Which parameters mattered</h3>",
        f"<p>{e(search.importance_note)}</p>",
        _table(f"importances{suffix}", *importance_table(search)),
    ]
    if search.notes:
        parts += ["<ul>", *(f"<li>{e(n)}</li>" for n in search.notes), "</ul>"]
    return [*parts, "</section>"]


def _code(text: str) -> str:
    """Markdown's `code` spans as <code>, the rest escaped."""
    pieces = text.split("`")
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(pieces)
    )


def render(
    summary: Summary,
    title: str,
    meta: str,
    plots: dict[str, bytes],
    samples: dict[str, bytes],
    searches: Sequence[Search] = (),
    histories: Sequence[bytes] = (),
) -> str:
    """``plots``: score -> PNG; ``samples``: run label -> PNG of its newest grid;
    ``histories``: each search's optimization history PNG."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="meta">{e(meta)}</p>',
    ]
    if summary.common:
        parts.append(
            "<p>Overrides common to all runs: <code>" + e(" ".join(summary.common)) + "</code></p>"
        )
    for i, (search, history) in enumerate(zip(searches, histories)):
        parts += _search(search, i, len(searches), history)
    if summary.grouped:
        parts += [
            "<h2>Seed groups</h2>",
            "<p>Runs whose overrides differ only in <code>seed</code>: mean ± standard error "
            "over each group's finished runs (s.e. = sample standard deviation / √n; "
            "a group of one shows its value).</p>",
            _table("groups", *group_table(summary)),
        ]
    parts += ["<h2>Runs</h2>", _table("runs", *run_table(summary))]
    if summary.not_finished:
        parts += ["<h2>Runs that did not finish</h2>", '<ul id="not-finished">']
        for run in summary.not_finished:
            parts.append(
                f'<li data-run="{e(run.label)}"><b>{e(run.label)}</b> '
                f'<span class="status s-{e(run.status.replace(" ", "-"))}">{e(run.status)}</span>'
                f"{': ' + e(run.message) if run.message else ''}</li>"
            )
        parts.append("</ul>")
    notes = [(run, note) for run in summary.runs for note in run.notes]
    if notes:
        parts += ["<h2>Notes</h2>", "<ul>"]
        parts += [f"<li><b>{e(run.label)}</b>: {e(note)}</li>" for run, note in notes]
        parts.append("</ul>")
    if plots:
        parts.append("<h2>Scores over training</h2>")
        for score, png in plots.items():
            parts.append(
                f'<figure><img class="plot" alt="{e(score)}" src="{data_uri(png)}"></figure>'
            )
    if samples:
        parts.append("<h2>Newest sample grids</h2>")
        by_label = {r.label: r for r in summary.runs}
        for label, png in samples.items():
            run = by_label[label]
            caption = f"{label} · {run.status}"
            if run.sample is not None:
                caption += f" · {Path(run.sample).stem}"
            text = summary.varying_text(run)
            parts.append(
                f'<figure><img class="sample" alt="samples of {e(label)}" src="{data_uri(png)}">'
                f"<figcaption>{e(caption)}<br>{e(text)}</figcaption></figure>"
            )
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"

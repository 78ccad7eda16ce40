"""ganrun report: a real 2x2 sweep (model.width=8,16 x seed=0,1) trained by the
installed `ganrun` command, plus hand-made run dirs (a failed run with its message,
a killed one), reported by `ganrun report DIR`; the tables, the seed groups, the
CSV, the plots, and report.html rendered in headless Chromium."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.conftest import cli_error, ganrun

# The ring is shrunk so that a 4-step G (outputs near 0) already lands near several
# modes: mode counts and reverse KL then differ between seeds and widths.
SWEEP = [
    "model=vanilla", "dataset=ring", "dataset.radius=0.05", "dataset.std=0.05",
    "eval=modes", "eval.every=2", "eval.n_modes=200", "logger.tensorboard=false",
    "trainer.steps=4", "trainer.batch_size=16", "trainer.device=cpu", "trainer.progress=false",
    "trainer.image_every=2", "trainer.checkpoint_every=2", "trainer.n_fixed=4",
    "trainer.num_workers=0",
]  # fmt: skip
SCORES = ["modes", "high_quality", "reverse_kl"]
FAILED_MESSAGE = "cannot read the dataset folder /nonexistent: no such file or directory"


def _hand_made(run: Path, overrides: list[str], status: dict) -> None:
    """A run dir as ganrun train leaves it when it stops before any evaluation."""
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
    (run / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"trainer": {"steps": 4}, "seed": seed})
    )
    base = {"message": None, "exit_status": None, "step": 0, "steps": 4, "pid": 1, "host": "vm"}
    base |= {"started": "2026-12-02T10:00:00", "updated": "2026-12-02T10:00:05"}
    base |= {"wall_seconds": 5.0}
    (run / "status.json").write_text(json.dumps(base | status))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Jobs 0-3 trained for real; 4 failed (width 8, seed 2), 5 killed (width 16, seed 2)."""
    root = tmp_path_factory.mktemp("report")
    # job dirs numbered only (hydra.sweep.subdir given: the user's choice wins over
    # ganrun's named ones), so the labels below are the job numbers
    r = ganrun(
        "train", "-m", *SWEEP, "model.width=8,16", "seed=0,1", "hydra.sweep.dir=sweep",
        "hydra.sweep.subdir=${hydra.job.num}", cwd=root,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    folder = root / "sweep"
    common = [o for o in SWEEP]
    _hand_made(
        folder / "4",
        [*common, "model.width=8", "seed=2"],
        {"status": "failed", "message": FAILED_MESSAGE, "exit_status": 2},
    )
    # "running" but no process holds the run dir's lock: the job was killed
    _hand_made(folder / "5", [*common, "model.width=16", "seed=2"], {"status": "running"})
    return folder


@pytest.fixture(scope="module")
def reported(sweep) -> Path:
    r = ganrun("report", str(sweep), cwd=sweep.parent)
    assert r.returncode == 0, r.stderr
    assert "6 run(s)" in r.stdout and str(sweep / "report.html") in r.stdout
    return sweep


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


# --------------------------------------------------------------------------- tables
def test_csv_has_a_row_per_run_with_status_steps_and_scores(reported):
    rows = _csv(reported / "report.csv")
    assert [r["run"] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    assert [r["status"] for r in rows] == ["finished"] * 4 + ["failed", "killed"]
    assert rows[4]["message"] == FAILED_MESSAGE
    assert "ended without a final status" in rows[5]["message"]
    assert [r["model.width"] for r in rows] == ["8", "8", "16", "16", "8", "16"]
    assert [r["seed"] for r in rows] == ["0", "1", "0", "1", "2", "2"]
    header = list(rows[0])
    assert header[:10] == [
        "run", "path", "group", "status", "message", "step", "steps", "wall_seconds", "seed",
        "overrides",
    ]  # fmt: skip
    for score in SCORES:
        for part in ("final", "final_step", "best", "best_step"):
            assert f"{score}.{part}" in header
    for row in rows[:4]:
        records = _records(reported / row["run"])
        assert (row["step"], row["steps"]) == ("4", "4")
        assert float(row["wall_seconds"]) >= 0
        final = records[-1]["scores"]
        for score in SCORES:
            assert float(row[f"{score}.final"]) == pytest.approx(final[score])
            assert row[f"{score}.final_step"] == "4"
        # the best value by each score's direction over the run's evaluations
        assert float(row["modes.best"]) == max(r["scores"]["modes"] for r in records)
        finite_kl = [r["scores"]["reverse_kl"] for r in records]
        finite_kl = [v for v in finite_kl if math.isfinite(v)]
        if finite_kl:
            assert float(row["reverse_kl.best"]) == pytest.approx(min(finite_kl))
    assert rows[4]["modes.final"] == "" and rows[4]["step"] == "0"


def test_seed_groups_are_mean_and_standard_error_of_the_finished_runs(reported):
    groups = {g["group"]: g for g in _csv(reported / "report_groups.csv")}
    assert set(groups) == {"model.width=8", "model.width=16"}
    for width, jobs in (("8", ["0", "1"]), ("16", ["2", "3"])):
        g = groups[f"model.width={width}"]
        # the failed / killed seed-2 run is in the group but not in its statistics
        assert (g["runs"], g["finished"], g["seeds"]) == ("3", "2", "0, 1, 2")
        for score in ("modes", "reverse_kl"):
            values = [_records(reported / j)[-1]["scores"][score] for j in jobs]
            assert g[f"{score}.n"] == "2"
            assert float(g[f"{score}.final_mean"]) == pytest.approx(statistics.mean(values))
            se = statistics.stdev(values) / math.sqrt(2)
            assert float(g[f"{score}.final_se"]) == pytest.approx(se)


def test_markdown_lists_groups_runs_and_the_failed_runs_line(reported):
    md = (reported / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    group_rows = [r for r in rows if r.startswith("| model.width=")]
    assert len(group_rows) == 2
    for row in group_rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:4] == ["2", "3", "0, 1, 2"]  # n, runs, seeds
        assert "±" in cells[5]  # final modes: mean ± s.e.
    run_rows = [r for r in rows if re.match(r"\| \d \|", r)]
    assert len(run_rows) == 6 and "| failed |" in run_rows[4] and "| killed |" in run_rows[5]
    assert f"- `4` (failed): {FAILED_MESSAGE}" in md
    assert "Overrides common to all runs: `model=vanilla dataset=ring" in md
    for score in SCORES:
        assert f"(report-{score}.png)" in md


def test_plots_are_pngs_one_per_score(reported):
    for score in SCORES:
        image = Image.open(reported / f"report-{score}.png")
        image.load()
        assert image.format == "PNG" and image.width > 300


def test_html_embeds_every_image_and_lists_the_failed_run(reported):
    page = (reported / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == len(SCORES) + 4  # the plots, and a sample grid per trained run
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri))).load()
    assert FAILED_MESSAGE in page


# --------------------------------------------------------------------------- Chromium
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.geteuid() != 0:
        pytest.skip("headless Chromium is not installed and installing it needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.skip(f"cannot install Debian's chromium ({' '.join(cmd)}): {e}")
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:]
            pytest.skip(f"cannot install Debian's chromium ({' '.join(cmd)}): {tail}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no chromium command appeared")
    return found


def _dom(browser: str, page: Path, query: str = "") -> str:
    r = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
            "--dump-dom", page.resolve().as_uri() + query,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and "</html>" in r.stdout, r.stderr[-2000:]
    return r.stdout


def _run_order(dom: str) -> list[str]:
    table = dom[dom.index('id="runs"') :]
    table = table[: table.index("</table>")]
    return re.findall(r'<tr><td data-v="([^"]*)"', table)


def test_report_html_in_headless_chromium_sorts_and_decodes_its_images(reported):
    browser = _chromium()
    page = reported / "report.html"
    dom = _dom(browser, page)
    n_images = len(SCORES) + 4
    assert f'data-images="{n_images}/{n_images}"' in dom  # every <img> decoded
    assert _run_order(dom) == ["0", "1", "2", "3", "4", "5"]
    rows = _csv(reported / "report.csv")

    def ranked(column: str, reverse: bool) -> list[str]:
        have = [r for r in rows if r[column] != ""]
        have.sort(key=lambda r: float(r[column]), reverse=reverse)
        return [r["run"] for r in have] + [r["run"] for r in rows if r[column] == ""]

    dom = _dom(browser, page, "?sort=final-reverse-kl&desc=1")
    assert 'data-sorted="final-reverse-kl"' in dom
    assert _run_order(dom) == ranked("reverse_kl.final", reverse=True)
    dom = _dom(browser, page, "?sort=status")
    order = _run_order(dom)
    statuses = {r["run"]: r["status"] for r in rows}
    assert [statuses[o] for o in order] == sorted(statuses[o] for o in order)
    assert order != ["0", "1", "2", "3", "4", "5"]  # failed / killed sort first


# --------------------------------------------------------------------------- single runs, old run dirs
def test_a_run_dir_on_its_own(reported, tmp_path):
    run = tmp_path / "one"
    shutil.copytree(reported / "2", run)
    from hydra.core.global_hydra import GlobalHydra

    from ganrun import cli

    try:
        cli.main(["report", str(run), f"out={tmp_path / 'rep'}"])
    finally:
        GlobalHydra.instance().clear()
    (row,) = _csv(tmp_path / "rep" / "report.csv")
    assert row["run"] == "one" and row["status"] == "finished"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Seed groups" not in md  # a group of one says nothing the run row does not
    assert "| one |" in md and "±" not in md
    assert not list(run.glob("report*"))  # out= elsewhere: the run dir is left alone


def test_run_dirs_without_status_json_are_inferred(reported, tmp_path):
    from ganrun.report.runs import read_run

    done = tmp_path / "done"
    shutil.copytree(reported / "0", done)
    (done / "status.json").unlink(missing_ok=True)
    assert read_run(done).status == "finished"  # newest checkpoint == trainer.steps
    cut = tmp_path / "cut"
    shutil.copytree(reported / "0", cut)
    (cut / "status.json").unlink(missing_ok=True)
    (cut / "checkpoints" / "step-00000004.pt").unlink()
    run = read_run(cut)
    assert run.status == "unfinished" and "step 2 of 4" in run.message


def test_a_running_status_with_its_lock_held_is_running(reported, tmp_path):
    from ganrun.report.runs import read_run
    from ganrun.training.rundir import RunDirLock

    run = tmp_path / "live"
    shutil.copytree(reported / "5", run)
    assert read_run(run).status == "killed"
    with RunDirLock(run):
        assert read_run(run).status == "running"


@pytest.mark.parametrize(
    "written, shown",
    [("finished", "finished"), ("failed", "failed"), ("diverged", "diverged"),
     ("stopped", "stopped early")],
)  # fmt: skip
def test_status_json_words(tmp_path, written, shown):
    from ganrun.report.runs import read_run

    message = None if written == "finished" else f"the {written} line"
    _hand_made(tmp_path / "r", ["model=dcgan", "seed=0"], {"status": written, "message": message})
    run = read_run(tmp_path / "r")
    assert (run.status, run.message, run.steps, run.wall_seconds) == (shown, message, 4, 5.0)


def test_odd_folder_names_pass_through_to_hydra(reported, tmp_path):
    from ganrun.commands.report import command_line

    assert command_line(["a b", "out=x"]) == ["dirs=['a b']", "out=x"]
    # a flag's value is not a folder
    assert command_line(["a", "--cfg", "job"]) == ["dirs=['a']", "--cfg", "job"]
    assert command_line(["--info", "config", "a"]) == ["dirs=['a']", "--info", "config"]
    odd = tmp_path / "it's, odd=1"
    shutil.copytree(reported / "1", odd / "1")
    r = ganrun("report", str(odd), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [row["run"] for row in _csv(odd / "report.csv")] == ["1"]


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, reported):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = cli_error(["report", str(tmp_path / "missing")], capsys)
    assert "no such folder" in err
    err = cli_error(["report", str(empty)], capsys)
    assert "no ganrun runs in" in err
    err = cli_error(["report"], capsys)
    assert "no folder given" in err
    err = cli_error(["report", str(reported / "0"), str(reported / "1")], capsys)
    assert "out=<folder>" in err
    (tmp_path / "file").write_text("")
    err = cli_error(["report", str(reported / "0"), f"out={tmp_path / 'file'}"], capsys)
    assert "is a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file"]
    assert not list(empty.iterdir())


def test_mean_and_standard_error():
    from ganrun.report.summary import mean_se

    s = mean_se([1.0, 2.0, 3.0])
    assert (s.mean, s.n) == (2.0, 3) and s.se == pytest.approx(1 / math.sqrt(3))
    assert s.text() == "2 ± 0.58"
    one = mean_se([0.25])
    assert one.se is None and one.text() == "0.25"
    assert mean_se([1.0, math.inf]).text() == "inf"
    assert mean_se([]) is None


# --------------------------------------------------------------------------- Optuna searches
# A real 4-trial search (random sampler, seed 1): three complete trials whose mode counts
# differ, and one whose lr_g=1e30 diverges at once (a FAIL trial with its line).
SEARCH = [
    "hydra/sweeper=ganrun_optuna", *SWEEP[:-4], "trainer.threads=1", "trainer.num_workers=0",
    "logger=none", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.name=random",
    "hydra.sweeper.sampler.seed=1", "optimizer.lr_d=tag(log, interval(1e-4, 1e-2))",
    "model.width=choice(8,16)", "optimizer.lr_g=choice(1e-3,3e-3,1e30)",
]  # fmt: skip
SEARCHED = ["optimizer.lr_d", "model.width", "optimizer.lr_g"]
REPORT_FILES = {"report.md", "report.csv", "report_groups.csv", "report.html"}


def _trials(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]


def _md_section(md: str, heading: str) -> list[list[str]]:
    """The table rows (cells) under a Markdown heading, header row first."""
    part = md[md.index(heading) + len(heading) :]
    part = part[: part.index("\n#")] if "\n#" in part else part
    rows = [line for line in part.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", r)[1:-1]] for r in rows]
    return [cells[0], *cells[2:]]  # without the |---| line


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> tuple[Path, dict]:
    pytest.importorskip("optuna", reason="the sweeps extra: pip install 'ganrun[sweeps]'")
    root = tmp_path_factory.mktemp("search")
    r = ganrun("train", "-m", *SEARCH, "hydra.sweep.dir=search", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    folder = root / "search"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    r = ganrun("report", str(folder), cwd=root)
    assert r.returncode == 0, r.stderr
    assert str(folder / "report-optuna-history.png") in r.stdout
    return folder, before


def test_search_report_leaves_the_study_alone(search):
    folder, before = search
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert {"trials.jsonl", "best.yaml", "study.json", "optuna.journal"} <= set(before)
    for name, data in before.items():
        assert after[name] == data, f"{name} changed by ganrun report"
    new = set(after) - set(before)
    assert REPORT_FILES | {"report-optuna-history.png"} <= new
    assert all(n.startswith("report") for n in new), new


def test_search_trials_table_is_trials_jsonl(search):
    folder, _ = search
    trials = _trials(folder)
    states = [t["state"] for t in trials]
    assert len(trials) == 4 and states.count("COMPLETE") >= 2 and "FAIL" in states, states
    best = yaml.safe_load((folder / "best.yaml").read_text())
    md = (folder / "report.md").read_text()
    header, *rows = _md_section(md, "### Trials")
    assert header[:3] == ["trial", "state", "modes"]
    assert header[3:6] == SEARCHED and header[6:] == ["run dir", "time", "message"]
    assert len(rows) == len(trials)
    for row, t in zip(rows, trials):
        assert row[0] == str(t["number"]) and row[6] == t["run_dir"]
        assert row[1] == t["state"] + (" (best)" if t["number"] == best["number"] else "")
        if t["state"] == "COMPLETE":
            assert float(row[2]) == pytest.approx(t["value"], rel=1e-3)
        else:
            assert row[2] == "—"
        for cell, p in zip(row[3:6], SEARCHED):
            assert float(cell) == pytest.approx(float(t["params"][p]), rel=1e-3)
    page = (folder / "report.html").read_text()
    table = page[page.index('id="trials"') :]
    table = table[: table.index("</table>")]
    numbers = re.findall(r'<tr(?: class="[a-z]+")?><td data-v="(\d+)"', table)
    assert numbers == [str(t["number"]) for t in trials]


def test_search_fail_trial_has_its_message_and_is_not_best(search):
    folder, _ = search
    trials = _trials(folder)
    best = yaml.safe_load((folder / "best.yaml").read_text())
    failed = [t for t in trials if t["state"] == "FAIL"]
    assert failed and all(t["params"]["optimizer.lr_g"] == 1e30 for t in failed)
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert best["number"] == max(complete, key=lambda t: t["value"])["number"]  # maximize
    md = (folder / "report.md").read_text()
    _, *rows = _md_section(md, "### Trials")
    for t in failed:
        (row,) = [r for r in rows if r[0] == str(t["number"])]
        assert row[1] == "FAIL" and row[-1] == t["message"].replace("|", "\\|")
        assert row[-1].startswith("training diverged at step")
    assert f"Best trial {best['number']}: modes=" in md
    assert f"```bash\n{best['command']}\n```" in md
    page = (folder / "report.html").read_text()
    assert f'<pre class="command">{best["command"]}</pre>' in page
    for t in failed:
        assert t["message"] in page
    assert page.count('<tr class="best">') == 1 and page.count('<tr class="fail">') == len(failed)


def test_search_history_png_decodes_and_is_embedded(search):
    folder, _ = search
    image = Image.open(folder / "report-optuna-history.png")
    image.load()
    assert image.format == "PNG" and image.width > 300
    md = (folder / "report.md").read_text()
    assert "![optimization history](report-optuna-history.png)" in md
    page = (folder / "report.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    history = base64.b64encode((folder / "report-optuna-history.png").read_bytes()).decode()
    assert history in uris
    complete = sum(t["state"] == "COMPLETE" for t in _trials(folder))
    assert len(uris) == len(SCORES) + 1 + complete  # plots, history, a sample grid per run
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri))).load()


def test_search_importances_list_every_searched_parameter(search):
    folder, _ = search
    study = json.loads((folder / "study.json").read_text())
    assert (study["metric"], study["direction"]) == ("modes", "maximize")
    assert list(study["space"]) == SEARCHED
    assert study["space"]["model.width"]["name"] == "CategoricalDistribution"
    md = (folder / "report.md").read_text()
    header, *rows = _md_section(md, "### Which parameters mattered")
    assert header == ["parameter", "importance", "method"]
    assert sorted(r[0] for r in rows) == sorted(SEARCHED)
    assert all(r[2].startswith("Optuna fANOVA") for r in rows)  # >= 2 complete trials
    values = [float(r[1]) for r in rows]
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1, abs=0.01)
    page = (folder / "report.html").read_text()
    table = page[page.index('id="importances"') :]
    table = table[: table.index("</table>")]
    assert all(f'data-v="{p}"' in table for p in SEARCHED)


def test_search_report_in_headless_chromium_decodes_every_image(search):
    folder, _ = search
    browser = _chromium()
    dom = _dom(browser, folder / "report.html", "?table=trials&sort=value&desc=1")
    n = len(re.findall(r"<img ", (folder / "report.html").read_text()))
    assert f'data-images="{n}/{n}"' in dom and 'data-sorted="value"' in dom
    table = dom[dom.index('id="trials"') :]
    order = re.findall(
        r'<tr(?: class="[a-z]+")?><td data-v="(\d+)"', table[: table.index("</table>")]
    )
    trials = {t["number"]: t for t in _trials(folder)}
    values = [trials[int(o)]["value"] for o in order]
    have = [v for v in values if v is not None]
    assert have == sorted(have, reverse=True) and values[len(have) :] == [None] * (
        len(values) - len(have)
    )  # FAIL trials (no value) last


def test_a_grid_report_has_no_search_section(reported):
    md = (reported / "report.md").read_text()
    assert "Optuna search" not in md and not (reported / "report-optuna-history.png").exists()
    assert 'id="trials"' not in (reported / "report.html").read_text()


def test_fallback_importances_on_hand_made_trials(tmp_path):
    from ganrun.report.search import SPEARMAN, SPREAD, fallback_importances, read_search, spearman

    def trial(n, value, lr, width, beta, state="COMPLETE"):
        params = {"lr": lr, "width": width, "betas": beta, "fixed": 3}
        return {"number": n, "state": state, "value": value, "params": params, "run_dir": str(n)}

    trials = [
        trial(0, 1.0, 1e-4, 8, "[0.5,0.9]"),
        trial(1, 2.0, 2e-4, 16, "[0.5,0.9]"),
        trial(2, 3.0, 4e-4, 8, "[0.0,0.9]"),
        trial(3, 4.0, 8e-4, 16, "[0.0,0.9]"),
        trial(4, None, 1e30, 8, "[0.5,0.9]", state="FAIL"),  # left out: no value
    ]
    space = {"width": {"name": "CategoricalDistribution", "attributes": {"choices": [8, 16]}}}
    got = {
        i.param: i for i in fallback_importances(trials, ["lr", "width", "betas", "fixed"], space)
    }
    assert got["lr"].method == SPEARMAN and got["lr"].value == pytest.approx(1.0)
    # width: means 2 (8) and 3 (16) over a value spread of 3
    assert got["width"].method == SPREAD and got["width"].value == pytest.approx(1 / 3)
    # betas (text choices, no space given): means 1.5 and 3.5
    assert got["betas"].method == SPREAD and got["betas"].value == pytest.approx(2 / 3)
    assert got["fixed"].value is None and "one value" in got["fixed"].note
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486833)  # ties averaged
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0

    # a sweep dir with only trials.jsonl (no journal): the fallback, labelled, in the report
    folder = tmp_path / "search"
    for t in trials:
        run = folder / t["run_dir"]
        _hand_made(
            run,
            [f"seed={t['number']}", f"model.width={t['params']['width']}"],
            {"status": "finished"},
        )
    (folder / "trials.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trials))
    search = read_search(folder)
    assert [i.param for i in search.importances] == ["lr", "betas", "width", "fixed"]
    assert "Not Optuna's importances" in search.importance_note
    assert "no readable optuna.journal" in search.importance_note
    r = ganrun("report", str(folder), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    md = (folder / "report.md").read_text()
    _, *rows = _md_section(md, "### Which parameters mattered")
    assert [r[0] for r in rows] == ["lr", "betas", "width", "fixed"]
    spearman_md = SPEARMAN.replace("|", "\\|")
    assert rows[0][1] == "1" and rows[0][2] == spearman_md
    # without study.json the report cannot know width is a choice: numbers, so Spearman
    assert rows[1][2] == SPREAD and rows[2][2] == spearman_md
    assert rows[3][1] == "— (one value in all complete trials)"
    assert "No best.yaml and no known direction" in md
    # with the direction (study.json), the best complete trial is named, without a command
    (folder / "study.json").write_text(json.dumps({"metric": "fid", "direction": "minimize"}))
    r = ganrun("report", str(folder), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    md = (folder / "report.md").read_text()
    assert "Best trial 0: fid=1 (minimize), run dir `0`. (From trials.jsonl" in md
    assert "```bash" not in md
    _, *trial_rows = _md_section(md, "### Trials")
    assert [r[1] for r in trial_rows] == ["COMPLETE (best)"] + ["COMPLETE"] * 3 + ["FAIL"]


def test_search_without_optuna_uses_the_fallback_with_the_space_of_study_json(search, monkeypatch):
    import sys

    from ganrun.report.search import SPEARMAN, SPREAD, read_search

    folder, _ = search
    for name in [m for m in sys.modules if m == "optuna" or m.startswith("optuna.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    found = read_search(folder)
    assert "because Optuna is not installed" in found.importance_note
    assert (found.metric, found.direction) == ("modes", "maximize")  # from study.json
    methods = {i.param: i.method for i in found.importances}
    assert sorted(methods) == sorted(SEARCHED)
    # study.json says width and lr_g are choices, although their values are numbers
    assert methods == {"optimizer.lr_d": SPEARMAN, "model.width": SPREAD, "optimizer.lr_g": SPREAD}
    assert [t["number"] for t in found.trials] == [t["number"] for t in _trials(folder)]

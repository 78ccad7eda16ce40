"""The benchmark scripts in scripts/ run end to end (tiny settings, nothing timed)
and compare like with like."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=env
    )


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_throughput_reference_is_the_same_dcgan_as_ganruns():
    """The speed comparison is only fair if the hand-written loop trains the same
    networks: same parameter count for G and D, same z size and batch."""
    from ganrun.build import build

    bt = _load("bench_throughput")
    cfg = bt.compose(bt.DEFAULTS)
    built = build(cfg)
    G, D = bt.reference_models(int(cfg.model.z_dim), 64, 64, 3)
    assert (_n(built.G), _n(built.D)) == (_n(G), _n(D))
    assert tuple(built.data.data_shape) == (3, 64, 64)


def test_bench_throughput_runs_and_writes_json(tmp_path):
    out = tmp_path / "tp.json"
    r = _run(
        str(SCRIPTS / "bench_throughput.py"),
        "--in-process",  # the spawned, per-measurement processes: tests/test_precision.py (slow)
        "--steps",
        "1",
        "--repeats",
        "1",
        "--json",
        str(out),
        "model.width=4",
        "trainer.batch_size=4",
        "dataset.resolution=32",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["batch"] == 4
    assert len(result["runs"]["ganrun"]) == 1 and result["median"]["ganrun"] > 0
    assert "reference" not in result["median"]


# one setup in the fast suite; the others (the same code path, other setups) are slow
@pytest.mark.parametrize(
    "setup",
    [
        "gan",
        pytest.param("pacgan4_ema", marks=pytest.mark.slow),
        pytest.param("ring_modes", marks=pytest.mark.slow),
    ],
)
def test_bench_modes_records_a_run_and_writes_the_report(tmp_path, setup):
    results, report = tmp_path / "runs.jsonl", tmp_path / "RESULTS.md"
    common = ["--results", str(results), "--out", str(report)]
    r = _run(
        str(SCRIPTS / "bench_modes.py"),
        "--protocol",
        "ring",
        "--setups",
        setup,
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--set",
        "model.width=8",
        "--work-dir",
        str(tmp_path / "work"),
        *common,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["setup"] for row in rows] == ["data", setup]
    run = rows[1]
    assert [c["step"] for c in run["curve"]] == [2, 4]
    assert set(run["metrics"]) == {"modes", "high_quality", "reverse_kl"}
    assert 0 <= run["metrics"]["modes"] <= 8 and run["n_modes"] == 8
    assert ("trainer.ema_decay=0.999" in run["overrides"]) == setup.endswith("_ema")
    # the real data is the ceiling: every mode, ~98.9% high quality
    assert rows[0]["metrics"]["modes"] == 8 and rows[0]["metrics"]["high_quality"] > 0.97
    text = report.read_text()
    assert "## ring" in text and f"| {setup} (model.width=8) | 4 | 1 |" in text
    # hand-written findings below the marker survive a regeneration
    bm = _load("bench_modes")
    report.write_text(text + "\nmy finding\n")
    r = _run(str(SCRIPTS / "bench_modes.py"), "--report-only", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert bm.NOTES_MARKER in report.read_text() and "my finding" in report.read_text()


@pytest.mark.slow  # 27 s: trains, then fits DRS on the recorded run
def test_bench_modes_rejection_scores_a_recorded_run(tmp_path):
    results, report = tmp_path / "runs.jsonl", tmp_path / "RESULTS.md"
    common = ["--protocol", "grid", "--setups", "gan", "--steps", "4", "--set", "model.width=8"]
    common += [
        "--work-dir",
        str(tmp_path / "work"),
        "--results",
        str(results),
        "--out",
        str(report),
    ]
    bench = str(SCRIPTS / "bench_modes.py")
    r = _run(bench, *common, "--rejection", "drs", cwd=tmp_path)
    assert r.returncode == 2 and "train it first" in r.stderr  # nothing recorded yet
    r = _run(bench, *common, "--eval-every", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(bench, *common, "--rejection", "drs", "--rejection-steps", "20", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["setup"] for row in rows] == ["data", "gan", "gan+drs"]
    raw, kept = rows[1], rows[2]
    assert kept["train_seconds"] == raw["train_seconds"]  # no training: the run's own time
    assert kept["eval_seconds"] > raw["eval_seconds"]
    assert kept["rejection"]["fit"]["steps"] == 20 and 0 < kept["rejection"]["acceptance"] <= 1
    assert kept["rejection"]["protocol"]["estimator"]["init"] == "gan-D"  # pack 1: the GAN's D
    assert set(kept["metrics"]) == {"modes", "high_quality", "reverse_kl"}
    assert Path(kept["rejection"]["estimator"]).is_file()
    assert "| gan+drs (model.width=8) | 4 | 1 |" in report.read_text()


def test_bench_modes_fits_its_classifier_on_28px_digits(tmp_path, monkeypatch):
    # the stacked protocol's classifier reads 28 px channels; under the default dcgan
    # recipe's 32 px floor the script once fitted it on 32 px digits, which then failed
    # on every 28 px channel (a shape error in the classifier's linear layer)
    import ganrun.metrics.classifier as clf

    bm = _load("bench_modes")
    seen = []

    class Stop(Exception):
        pass

    def fake_train(x, y, xt, yt, num_classes):
        seen.append((tuple(x.shape[1:]), tuple(xt.shape[1:])))
        raise Stop

    monkeypatch.setattr(clf, "train_classifier", fake_train)
    with pytest.raises(Stop):
        bm.ensure_classifier(tmp_path / "c.pt")
    assert seen == [((1, 28, 28), (1, 28, 28))]


def test_bench_modes_refuses_an_unknown_setup(tmp_path):
    r = _run(
        str(SCRIPTS / "bench_modes.py"), "--protocol", "grid", "--setups", "nope", cwd=tmp_path
    )
    assert r.returncode == 2 and "unknown setups ['nope']" in r.stderr


def test_bench_quality_records_runs_and_the_reference(tmp_path):
    from tests.test_metrics import save_tiny_evaluator

    save_tiny_evaluator(tmp_path / "cache")
    results, report = tmp_path / "runs.jsonl", tmp_path / "RESULTS.md"
    report.write_text("# Results\n\nhand-written text\n")
    common = ["--results", str(results), "--out", str(report)]
    tiny = ["model.width=24", "trainer.batch_size=8", "eval.n=20", "logger.tensorboard=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANRUN_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, str(SCRIPTS / "bench_quality.py"), "--setups", "dcgan", "cgan"]
    args += ["--steps", "2", "--eval-every", "1", "--reference", "--set", *tiny]
    args += ["--work-dir", str(tmp_path / "work"), *common]
    # a run that diverges is recorded as such, not dropped (the guard stops it with exit 3)
    args += ["--define", "boom", "optimizer.lr_g=1e30", "optimizer.lr_d=1e30"]
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    boom = rows.pop()
    assert boom["setup"].startswith("boom") and boom["status"] == "diverged"
    assert boom["returncode"] == 3 and "diverged at step" in boom["message"]
    assert [row["setup"].split(" (model")[0] for row in rows] == [
        "real digits (reference)",
        "dcgan",
        "cgan",
    ]
    ref, dcgan, cgan = rows
    assert ref["n"] == 4500 and set(ref["final"]) == {"is", "fid", "kid", "precision", "recall"}
    assert cgan["overrides"][0] == "model=cgan" and "model.width=24" in cgan["overrides"]
    for run in (dcgan, cgan):
        assert run["status"] == "ok" and run["steps"] == 2, run["message"]
        assert [p["step"] for p in run["curve"]] == [1, 2]
        assert all(p["train_seconds"] >= 0 for p in run["curve"])
        assert run["command"].startswith("ganrun train") and "eval=offline" in run["command"]
    text = report.read_text()
    assert text.startswith("# Results\n\nhand-written text\n")  # the rest of the file is kept
    assert "| real digits (reference, n=4500) |" in text
    assert "| dcgan (model.width=24 trainer.batch_size=8 eval.n=20" in text
    assert "| 0/1 |" in text and "diverged (1 of 1: ganrun: error: training diverged" in text
    # a rewrite replaces the section instead of adding a second one
    bq = _load("bench_quality")
    r = _run(str(SCRIPTS / "bench_quality.py"), "--report-only", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert report.read_text().count(bq.START) == 1 and report.read_text() == text


def test_bench_quality_goal_needs_all_three_scores():
    bq = _load("bench_quality")
    good = {"is": 9.0, "precision": 0.85, "recall": 0.81}
    assert bq.meets_goal(good, real_is=9.7)
    assert not bq.meets_goal({**good, "is": 8.0}, real_is=9.7)  # below 90 % of the real IS
    assert not bq.meets_goal({**good, "recall": 0.79}, real_is=9.7)
    assert not bq.meets_goal({**good, "precision": None}, real_is=9.7)
    assert not bq.meets_goal(good, real_is=None)  # no reference row yet: nothing is met


def test_bench_quality_ceiling_is_the_default_reference_row():
    """A reference row taken with --set (dataset.resolution=32) is listed beside the
    default one, but the goal's IS ceiling stays the default row's, whichever is newer."""
    bq = _load("bench_quality")
    scores = {"fid": 10.0, "kid": 0.0, "precision": 0.9, "recall": 0.9}
    default = {"setup": "real digits (reference)", "reference": True, "set": [], "n": 4500,
               "final": {**scores, "is": 9.76}}  # fmt: skip
    at32 = {"setup": "real digits (reference, dataset.resolution=32)", "reference": True,
            "set": ["dataset.resolution=32"], "n": 4500, "final": {**scores, "is": 5.0}}  # fmt: skip
    text = bq.report([default, at32])
    assert "(≥ 8.78)" in text  # 90 % of 9.76, not of the newer 32 px row's 5.0
    assert "| real digits (reference, n=4500) | — | — | 9.76 |" in text
    assert "| real digits (reference, dataset.resolution=32) (n=4500) | — | — | 5 |" in text


@pytest.mark.slow
def test_bench_throughput_overhead_reports_each_event(tmp_path):
    """--overhead: a cost per log step, picture and checkpoint, and their share at the
    default intervals (log 50, image 500, checkpoint 1000)."""
    out = tmp_path / "overhead.json"
    _run(str(SCRIPTS / "bench_throughput.py"), "--overhead", "--steps", "4", "--every", "2",
         "--repeats", "1", "model.width=8", "dataset.resolution=32", "--json", str(out),
         cwd=tmp_path)  # fmt: skip
    got = json.loads(out.read_text())
    assert {e: v["default_every"] for e, v in got["events"].items()} == {
        "log": 50,
        "image": 500,
        "checkpoint": 1000,
    }
    assert got["step_s"] > 0 and got["share"] >= 0
    assert got["share"] == pytest.approx(sum(v["share"] for v in got["events"].values()))

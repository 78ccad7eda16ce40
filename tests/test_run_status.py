"""status.json and the sweep value (docs/RELIABILITY.md, docs/SWEEPS.md): what a run
dir says about how its run ended, and the one number `ganrun train` returns to a
sweeper — never a 0 or inf standing in for a missing or diverged score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ganrun.errors import ConfigError, DivergenceError
from ganrun.training.evaluation import sweep_score, sweep_value
from ganrun.training.rundir import RunDirError, read_status
from tests.conftest import run_train, tiny_overrides

TINY = tiny_overrides("dcgan", "mnist_embedded", "logger.tensorboard=false")
RING = [
    *tiny_overrides("pacgan_mlp", "ring", "logger.tensorboard=false"),
    "eval=modes",
    "eval.every=2",
    "eval.n_modes=200",
    "trainer.steps=4",
]


def _metrics(run_dir: Path, values: list[float], name="fid[mnist-classifier]"):
    with open(run_dir / "metrics.jsonl", "w") as f:
        for i, v in enumerate(values):
            f.write(
                json.dumps({"step": i, "scores": {name: v, "is[mnist-classifier]": 1.0}}) + "\n"
            )


def test_finished_run_records_its_sweep_value(tmp_path, caplog):
    with caplog.at_level("INFO"):
        _, result = run_train(tmp_path, RING)
    status = read_status(tmp_path)
    assert status["status"] == "finished" and status["exit_status"] == 0
    assert status["step"] == status["steps"] == 4
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = max(r["scores"]["modes"] for r in lines)  # modes: higher is better
    assert result["sweep/value"] == best == status["sweep"]["value"]
    assert status["sweep"]["metric"] == "modes"
    summary = caplog.text[caplog.text.index("summary of") :]  # the run's last words
    assert "final scores (step 4): modes=" in summary
    assert f"best: modes={best:.4g} at step" in summary and "best.pt" in summary


def test_diverged_run_has_no_value_and_says_why(tmp_path):
    with pytest.raises(DivergenceError):
        run_train(tmp_path, [*TINY, "optimizer.lr_d=1e30", "optimizer.lr_g=1e30"])
    status = read_status(tmp_path)
    assert status["status"] == "diverged" and status["exit_status"] == 3
    assert status["message"].startswith("training diverged at step")


def test_refused_start_leaves_the_other_runs_status(tmp_path):
    run_train(tmp_path, [*TINY, "trainer.steps=2"])
    before = (tmp_path / "status.json").read_bytes()
    with pytest.raises(RunDirError):
        run_train(tmp_path, [*TINY, "trainer.steps=2", "seed=3"])
    assert (tmp_path / "status.json").read_bytes() == before


@pytest.mark.parametrize(
    "sweep, values, expected",
    [
        ([], [30.0, 10.0, 20.0], 10.0),  # eval.best=fid, lower is better
        (["sweep.reduce=final"], [30.0, 10.0, 20.0], 20.0),
        (["sweep.metric=is"], [30.0, 10.0], 1.0),
        (["sweep.metric='fid[mnist-classifier]'"], [5.0, float("nan")], 5.0),  # best finite
        (["sweep.reduce=final"], [5.0, float("nan")], None),  # a NaN is not a result
        (["sweep.metric=kid"], [5.0], None),  # not measured
    ],
)
def test_sweep_value(tmp_path, compose_cfg, sweep, values, expected):
    cfg = compose_cfg([*TINY, "eval=offline", *sweep])
    _metrics(tmp_path, values)
    value, why = sweep_value(cfg, tmp_path)
    assert value == expected, why
    if expected is None:
        assert "no kid" in why or "not finite" in why


def test_no_evaluation_no_value(tmp_path, compose_cfg):
    value, why = sweep_value(compose_cfg(TINY), tmp_path)
    assert value is None and "no evaluation" in why


@pytest.mark.parametrize(
    "override, needle",
    [
        ("sweep.direction=maximize", "use sweep.direction=minimize"),
        ("sweep.direction=up", "must be minimize or maximize"),
        ("sweep.reduce=mean", "must be best or final"),
        ("sweep.metric=nonsense", "no known direction"),
    ],
)
def test_contradicting_sweep_settings_are_refused(compose_cfg, override, needle):
    cfg = compose_cfg([*TINY, "eval=offline", override])
    with pytest.raises(ConfigError, match=needle):
        sweep_score(cfg)


def test_a_failed_job_does_not_sink_the_sweep(tmp_path):
    """A 2-job grid where one job diverges: both jobs run, the diverged one's dir says
    why (status.json, train.log), the other finishes."""
    exe = str(Path(sys.executable).with_name("ganrun"))
    args = [exe, "train", "-m", *TINY, "trainer.steps=2", "optimizer.lr_g=1e30,0.0002"]
    args += [f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    statuses = [read_status(j) for j in jobs]
    assert [s["status"] for s in statuses] == ["diverged", "finished"], statuses
    log = (jobs[0] / "train.log").read_text()
    assert "training diverged" in log and "the sweep goes on" in log


def test_a_refused_job_of_a_sweep_says_why_in_its_train_log(tmp_path):
    """Job 0's dir already holds another run's checkpoints: that job is refused before it
    claims the dir (no status.json of its own), its train.log has the line, job 1 runs."""
    sweep = tmp_path / "sweep"
    run_train(sweep / "0", [*TINY, "trainer.steps=2", "seed=7"])
    exe = str(Path(sys.executable).with_name("ganrun"))
    args = [exe, "train", "-m", *TINY, "trainer.steps=2", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    args.append("hydra.sweep.subdir=${hydra.job.num}")  # job dirs 0, 1 (not 0_seed-0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    log = (sweep / "0" / "train.log").read_text()
    assert "error: " in log and "another run's checkpoints" in log and "seed=7 there, 0 now" in log
    assert read_status(sweep / "0")["status"] == "finished"  # the other run's, untouched
    assert read_status(sweep / "1")["status"] == "finished"

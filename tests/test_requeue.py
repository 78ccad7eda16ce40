"""Requeue and one run per run dir (issue 15; docs/RELIABILITY.md): auto-resume of this
run's checkpoints, refusal of another run's, the run-dir lock, the writability check
before the first step, stop signals before the loop, and the preemption exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ganrun import checkpoint as ckpt
from ganrun.errors import Stopped
from ganrun.training.rundir import (
    LOCK_NAME,
    RunDirError,
    RunDirLock,
    differing_settings,
    read_status,
)
from tests.conftest import (
    cli_env,
    ganrun,
    ganrun_exe,
    run_train,
    signal_when_training,
    tiny_overrides,
)

TINY = tiny_overrides("dcgan", "mnist_embedded", "logger.tensorboard=false")


def test_rerun_in_the_same_dir_continues_bit_exact(tmp_path, caplog):
    """A requeued job (the same command, the same run dir) continues from its newest
    checkpoint, and ends where an uninterrupted run ends."""
    base = [*TINY, "trainer.checkpoint_every=2"]
    run_train(tmp_path / "straight", [*base, "trainer.steps=4"])
    run_train(tmp_path / "requeued", [*base, "trainer.steps=2"])
    with caplog.at_level("INFO"):
        run_train(tmp_path / "requeued", [*base, "trainer.steps=4"])
    assert "auto-resume" in caplog.text and "continuing from step 2" in caplog.text
    assert [s for s, _ in ckpt.step_checkpoints(tmp_path / "requeued" / "checkpoints")] == [2, 4]
    a, b = ckpt.load(tmp_path / "straight")[1], ckpt.load(tmp_path / "requeued")[1]
    for part in a["models"]:
        for k, v in a["models"][part].items():
            assert torch.equal(v, b["models"][part][k]), f"{part}.{k}"


def test_a_finished_run_requeued_does_nothing(tmp_path, caplog):
    run_train(tmp_path, [*TINY, "trainer.steps=2"])
    before = ckpt.step_checkpoints(tmp_path / "checkpoints")
    with caplog.at_level("INFO"):
        run_train(tmp_path, [*TINY, "trainer.steps=2"])
    assert "nothing to do" in caplog.text
    assert ckpt.step_checkpoints(tmp_path / "checkpoints") == before


def test_another_runs_checkpoints_are_refused(tmp_path):
    run_train(tmp_path, [*TINY, "trainer.steps=2"])
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()}
    with pytest.raises(RunDirError) as e:
        run_train(tmp_path, [*TINY, "trainer.steps=2", "seed=5"])
    msg = str(e.value)
    assert "another run's checkpoints" in msg and "seed=0 there, 5 now" in msg
    assert f"resume={tmp_path}" in msg and "fresh dir" in msg
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()}
    assert after == before


def test_auto_resume_false_refuses_to_start_over(tmp_path):
    run_train(tmp_path, [*TINY, "trainer.steps=2"])
    with pytest.raises(RunDirError, match="trainer.auto_resume=false would start it over"):
        run_train(tmp_path, [*TINY, "trainer.steps=4", "trainer.auto_resume=false"])
    assert [s for s, _ in ckpt.step_checkpoints(tmp_path / "checkpoints")] == [2]


def test_operational_settings_do_not_make_another_run(compose_cfg):
    a = compose_cfg(TINY)
    b = compose_cfg([*TINY, "trainer.steps=99", "trainer.log_every=7", "eval=offline"])
    stored = ckpt_config(a)
    assert differing_settings(b, stored) == []
    c = compose_cfg([*TINY, "optimizer.lr_d=0.123"])
    assert [k for k, _, _ in differing_settings(c, stored)] == ["optimizer.lr_d"]


def ckpt_config(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def test_cli_refuses_another_run_before_hydra_writes(tmp_path):
    """The refusal comes from the preflight: the old run's .hydra/ files stay its own."""
    run = tmp_path / "run"
    args = [ganrun_exe(), "train", *TINY, f"hydra.run.dir={run}"]
    r = subprocess.run(args, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    saved = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    r = subprocess.run(
        [*args, "model.width=16"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "model.width=8 there, 16 now" in r.stderr, r.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == saved


# --------------------------------------------------------------------------- lock
def test_a_held_run_dir_is_refused_naming_the_holder(tmp_path):
    with RunDirLock(tmp_path):
        with pytest.raises(RunDirError) as e:
            run_train(tmp_path, [*TINY, "trainer.steps=2"])
    assert f"pid {os.getpid()}" in str(e.value) and "in use by another ganrun process" in str(
        e.value
    )
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    run_train(tmp_path, [*TINY, "trainer.steps=2"])  # released on exit
    assert ckpt.step_checkpoints(tmp_path / "checkpoints")


def test_a_killed_owner_leaves_no_stale_lock(tmp_path):
    code = (
        "import sys, time; from ganrun.training.rundir import RunDirLock; "
        f"RunDirLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"pid {proc.pid}"):
            RunDirLock(tmp_path).acquire()
        proc.kill()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert (tmp_path / LOCK_NAME).is_file()  # the note stays; the lock does not
    RunDirLock(tmp_path).acquire().release()


def test_resume_while_the_original_runs_is_refused(tmp_path):
    """A second process (a resume of a run that is still training) gets one line."""
    run = tmp_path / "run"
    args = [ganrun_exe(), "train", *TINY, "trainer.steps=100000", "trainer.checkpoint_every=1"]
    args += [f"hydra.run.dir={run}"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not ckpt.step_checkpoints(run / "checkpoints") and time.time() < deadline:
            time.sleep(0.2)
        r = subprocess.run(
            [ganrun_exe(), "train", f"resume={run}", "trainer.steps=100000"],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"pid {proc.pid}" in r.stderr and r.stderr.count("\n") == 1, r.stderr


# --------------------------------------------------------------------------- writability
def test_unwritable_checkpoint_dir_is_found_before_the_first_step(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    with pytest.raises(RunDirError) as e:
        run_train(tmp_path, [*TINY, "trainer.steps=2"])
    assert f"cannot write checkpoints to {tmp_path / 'checkpoints'}" in str(e.value)
    assert not (tmp_path / "samples").exists()  # no step ran


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
def test_read_only_run_dir_is_found_before_the_first_step(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(RunDirError, match=r"read-only file system \(EROFS\)"):
            run_train(ro / "run", [*TINY, "trainer.steps=2"])
    finally:
        subprocess.run(["umount", str(ro)])


# --------------------------------------------------------------------------- signals
def test_signal_during_start_up_trains_nothing(tmp_path, monkeypatch):
    import ganrun.commands.train as train_cmd

    real_build = train_cmd.build

    def slow_build(cfg):  # a SIGTERM while the data and networks are being built
        os.kill(os.getpid(), signal.SIGTERM)
        return real_build(cfg)

    monkeypatch.setattr(train_cmd, "build", slow_build)
    with pytest.raises(Stopped) as e:
        run_train(tmp_path, [*TINY, "trainer.steps=2"])
    assert "SIGTERM during start-up: nothing was trained" in str(e.value)
    assert e.value.exit_status == 75
    assert not ckpt.step_checkpoints(tmp_path / "checkpoints")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back
    monkeypatch.undo()
    run_train(tmp_path, [*TINY, "trainer.steps=2"])  # the flag does not outlive the run


def test_preempted_job_exits_75_and_the_same_command_continues(tmp_path):
    """SIGTERM mid-run: a checkpoint at the step reached, exit status 75 and one
    'stopped' line saying how to continue; rerunning the very same command (what a
    requeued SLURM job does) continues from there."""
    run = tmp_path / "run"
    common = ["trainer.checkpoint_every=1000000", "trainer.image_every=1000000"]
    common += [f"hydra.run.dir={run}"]
    args = ["train", *TINY, *common, "trainer.steps=100000"]
    code, _, err = signal_when_training(args, tmp_path)
    assert code == 75, err
    assert "ganrun: stopped: SIGTERM at step" in err and f"resume={run}" in err, err
    assert "Traceback" not in err
    (step, _), *_ = reversed(ckpt.step_checkpoints(run / "checkpoints"))
    assert 3 <= step < 100000
    status = read_status(run)
    assert status["status"] == "stopped" and status["exit_status"] == 75
    assert status["step"] == step and status["message"].startswith("SIGTERM at step")
    r = ganrun(*args[:-1], f"trainer.steps={step + 2}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"continuing from step {step}" in r.stdout + r.stderr
    assert ckpt.step_checkpoints(run / "checkpoints")[-1][0] == step + 2

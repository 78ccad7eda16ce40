"""What a person reads after `ganrun train` (issue 17): train.log keeps the periodic
losses with the progress bar on, the bar and log lines do not garble each other, and
a finished run ends with a summary saying where things are and what to run next."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ganrun.training.loop import _count
from tests.conftest import tiny_overrides


def _train(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    run = tmp_path / "run"
    args = [str(Path(sys.executable).with_name("ganrun")), "train"]
    args += [*tiny_overrides("dcgan", "mnist_embedded", "logger.tensorboard=false"), *extra]
    args += [f"hydra.run.dir={run}"]
    # one unbuffered stream, as on a terminal: the bar (stderr) and the log lines
    # (stdout) interleave in the order they are written
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout
    return r, run


def test_train_log_keeps_the_losses_with_the_progress_bar_on(tmp_path):
    r, run = _train(tmp_path, "trainer.progress=true", "trainer.steps=6", "trainer.log_every=2")
    log = (run / "train.log").read_text()
    steps = [int(m) for m in re.findall(r"step (\d+)/6 D=", log)]
    assert steps == [2, 4, 6]
    assert "%|" not in log  # no copy of the bar in the file
    # on the terminal every log line starts on a line of its own, not after a bar
    for chunk in re.split(r"[\r\n]", r.stdout):
        if "][ganrun." in chunk:
            assert chunk.startswith("["), chunk


def test_a_finished_run_ends_with_a_summary(tmp_path):
    r, run = _train(tmp_path, "trainer.progress=false")
    log = (run / "train.log").read_text()
    summary = log[log.index("summary of") :]
    assert f"last checkpoint: {run / 'checkpoints' / 'step-00000003.pt'}" in summary
    assert f"last grid: {run / 'samples' / 'step-00000003.png'}" in summary
    assert f"ganrun sample ckpt={run} out=grid.png" in summary
    assert f"ganrun train resume={run} trainer.steps=6" in summary


def test_parameter_counts_of_small_models_are_readable():
    assert [_count(n) for n in (12, 3012, 14_800, 3_570_000)] == ["12", "3.0k", "14.8k", "3.57M"]

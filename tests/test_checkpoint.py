"""Checkpoints: atomic, pruned, safe to load, RNG round trip, clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ganrun import checkpoint as ckpt
from ganrun.errors import CheckpointError


def _payload():
    return {
        "models": {"G": torch.nn.Linear(2, 2).state_dict()},
        "rng": ckpt.rng_state(),
        "config": {"a": 1},
    }


def test_save_load_and_keep_last_k(tmp_path):
    for step in (10, 20, 30, 40):
        ckpt.save(tmp_path, step, _payload(), keep=2)
    assert [s for s, _ in ckpt.step_checkpoints(tmp_path / "checkpoints")] == [30, 40]
    path, state = ckpt.load(tmp_path)
    assert (
        path.name == "step-00000040.pt" and state["step"] == 40 and state["format"] == ckpt.FORMAT
    )
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))  # no temporary files left


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    ckpt.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_rng_state_survives_weights_only(tmp_path):
    np.random.seed(3)
    ckpt.save(tmp_path, 1, _payload(), keep=1)
    expected = np.random.rand()
    np.random.seed(99)
    _, state = ckpt.load(tmp_path)
    ckpt.set_rng_state(state["rng"])
    assert np.random.rand() == expected


def test_plain_refuses_objects():
    with pytest.raises(TypeError, match="cannot go into a checkpoint"):
        ckpt.plain({"x": object()})
    assert ckpt.plain({"v": torch.__version__})["v"].__class__ is str


def test_truncated_checkpoint(tmp_path):
    path = ckpt.save(tmp_path, 5, _payload(), keep=1)
    data = path.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ckpt.load(bad)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        ckpt.load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoints in"):
        ckpt.load(tmp_path)
    foreign = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a ganrun checkpoint"):
        ckpt.load(foreign)


class _Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_loading_never_runs_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "payload": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="refusing to load"):
        ckpt.load(evil)
    assert not (tmp_path / "PWNED").exists()


def test_damaged_newest_falls_back_to_previous(tmp_path):
    ckpt.save(tmp_path, 10, _payload(), keep=3)
    newest = ckpt.save(tmp_path, 20, _payload(), keep=3)
    newest.write_bytes(b"garbage")
    path, state = ckpt.load(tmp_path)
    assert state["step"] == 10
    # naming the damaged file itself is an error, not a silent fallback
    with pytest.raises(CheckpointError):
        ckpt.load(newest)


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.pt"
    ckpt.atomic_save({"a": torch.ones(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        ckpt.atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_run_dir_of(tmp_path):
    p = tmp_path / "run" / "checkpoints" / "step-00000001.pt"
    assert ckpt.run_dir_of(p) == (tmp_path / "run").resolve()


def test_pruning_keeps_the_checkpoint_just_written(tmp_path):
    # an earlier run's checkpoints at higher steps, then a run restarted from 0 in the same dir
    for step in (5000, 6000):
        ckpt.save(tmp_path, step, _payload(), keep=2)
    path = ckpt.save(tmp_path, 1000, _payload(), keep=2)
    assert path.is_file() and ckpt.load_file(path)["step"] == 1000
    # the others are pruned among themselves: the newest keep - 1 of them stay
    assert [s for s, _ in ckpt.step_checkpoints(tmp_path / "checkpoints")] == [1000, 6000]
    ckpt.save(tmp_path, 2000, _payload(), keep=1)
    assert [s for s, _ in ckpt.step_checkpoints(tmp_path / "checkpoints")] == [2000]


def _dead_pid():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: its pid names no process (until reused, which is rare in a test)
    return proc.pid


def test_stale_temporaries_removed_at_the_next_write(tmp_path):
    import os

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    dead = folder / f".step-00000010.pt.tmp-{_dead_pid()}"
    mine = folder / f".step-00000010.pt.tmp-{os.getpid()}"
    live = folder / f".best.pt.tmp-{os.getppid()}"  # a live process: maybe still writing
    for p in (dead, mine, live):
        p.write_bytes(b"partial")
    assert ckpt.clean_temporaries(folder) == [dead]
    assert not dead.exists() and mine.exists() and live.exists()
    dead.write_bytes(b"partial")
    ckpt.save(tmp_path, 20, _payload(), keep=2)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [mine.name, live.name, "step-00000020.pt"]
    )
    assert ckpt.clean_temporaries(tmp_path / "missing") == []

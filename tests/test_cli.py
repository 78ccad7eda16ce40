"""The installed `ganrun` command, end to end, in subprocesses."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ganrun, signal_when_training

TINY = [
    "model.width=8",
    "model.z_dim=16",
    "trainer.batch_size=16",
    "trainer.device=cpu",
    "trainer.progress=false",
    "trainer.num_workers=0",
]


def _snapshot(folder: Path) -> dict[str, str]:
    """The run's files; the lock's note (who last held the run dir) is not one."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".ganrun.lock"
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """`ganrun train` for 20 steps, then resumed to 30."""
    work = tmp_path_factory.mktemp("cli")
    run = work / "run"
    r = ganrun(
        "train",
        *TINY,
        "trainer.steps=20",
        "trainer.checkpoint_every=10",
        "trainer.log_every=5",
        f"hydra.run.dir={run}",
        cwd=work,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000010.pt",
        "step-00000020.pt",
    ]
    r = ganrun("train", f"resume={run}", "trainer.steps=30", cwd=work)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "step-00000020.pt" in r.stdout
    return run


def test_train_resume_sample_end_to_end(run_dir, tmp_path):
    assert (run_dir / "checkpoints" / "step-00000030.pt").is_file()
    assert (run_dir / "samples" / "step-00000030.png").is_file()
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    out = tmp_path / "grid.png"
    r = ganrun("sample", f"ckpt={run_dir}", "n=64", "nrow=8", f"out={out}", "seed=0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (8 * 34 + 2, 8 * 34 + 2)  # 32 px tiles (dcgan), padding 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # nothing else written


def _check_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ganrun: error: ")
    assert "Traceback" not in r.stderr + r.stdout
    for n in needles:
        assert n in lines[0], lines[0]


BAD_TRAIN = [
    (["model=stylegan3"], ["model=stylegan3 is not an option", "dcgan", "vanilla"]),
    (["loss=foo"], ["loss=foo is not an option", "minimax", "nonsaturating"]),
    (["optimizer=adamw"], ["optimizer=adamw is not an option", "adam", "sgd"]),
    (["dataset=imagenet"], ["dataset=imagenet is not an option", "mnist_embedded"]),
    (["trainer=fast"], ["trainer=fast is not an option", "default"]),
    (["trainer.steps=ten"], ["trainer.steps", "ten"]),
    (["model.width=wide"], ["model.G.width='wide' has the wrong type"]),
    (["trainer.stepz=3"], ["trainer.stepz is not a setting of trainer", "steps"]),
    (["dataset.resolution=48"], ["supports dataset.resolution in {28, 32, 64}"]),
    (
        ["dataset=image_folder", "dataset.root=/no/such/dir"],
        ["dataset.root=/no/such/dir is not a folder"],
    ),
    (
        ["dataset=cifar10", "dataset.root=/no/such/dir"],
        ["CIFAR-10 not found", "dataset.download=true"],
    ),
]


@pytest.mark.parametrize("args,needles", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_input(args, needles, tmp_path):
    r = ganrun("train", *args, cwd=tmp_path)
    _check_one_line_error(r, *needles)
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run dir


def test_bad_checkpoints_damage_nothing(run_dir, tmp_path):
    before = _snapshot(run_dir)
    truncated = tmp_path / "truncated.pt"
    data = (run_dir / "checkpoints" / "step-00000030.pt").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    cases = [
        (("train", f"resume={tmp_path / 'missing'}"), ["no checkpoint at"]),
        (("train", f"resume={truncated}"), ["not a readable checkpoint"]),
        (
            ("train", f"resume={run_dir}", "model=vanilla"),
            ["trained with model=dcgan", "a resumed run keeps it"],
        ),
        (
            ("train", f"resume={run_dir}", "model.width=16", "trainer.steps=40"),
            ["does not match", "another architecture"],
        ),
        (("sample", f"ckpt={tmp_path / 'missing'}"), ["no checkpoint at"]),
        (
            ("sample", f"ckpt={truncated}", f"out={tmp_path / 'x.png'}"),
            ["not a readable checkpoint"],
        ),
        (("sample",), ["ckpt is required"]),
    ]
    for args, needles in cases:
        r = ganrun(*args, cwd=tmp_path)
        _check_one_line_error(r, *needles)
    assert _snapshot(run_dir) == before


def test_unknown_command(tmp_path):
    r = ganrun("tran", cwd=tmp_path)
    _check_one_line_error(r, "unknown command 'tran'", "train", "sample")


def test_hydra_help_and_cfg(tmp_path):
    r = ganrun("train", "--help", cwd=tmp_path)
    assert r.returncode == 0
    listed = next(ln for ln in r.stdout.splitlines() if ln.startswith("model: "))
    assert {"dcgan", "vanilla", "wgan_gp", "stylegan"} <= set(listed[7:].split(", "))
    r = ganrun("train", "model=vanilla", "--cfg", "job", cwd=tmp_path)
    assert r.returncode == 0 and "_target_: ganrun.optim.SGD" in r.stdout
    assert not (tmp_path / "outputs").exists()


def test_multirun_sweep_runs_all_jobs(tmp_path):
    r = ganrun(
        "train", "-m", "model=vanilla,dcgan", "dataset=ring,mnist_embedded", *TINY, "trainer.steps=2",
        "logger.tensorboard=false", "hydra.sweep.dir=sweep", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(jobs) == 4
    for job in jobs:
        assert (job / "checkpoints" / "step-00000002.pt").is_file(), job


def test_sigterm_checkpoints_and_resume_continues(tmp_path):
    """A preempted job (SIGTERM) writes a checkpoint at the step it reached and exits
    75; `resume=` continues from there."""
    from ganrun import checkpoint as ckpt

    run = tmp_path / "run"
    args = ["train", *TINY, "trainer.steps=100000", "trainer.checkpoint_every=1000000"]
    args += ["trainer.log_every=1", "logger.tensorboard=false", f"hydra.run.dir={run}"]
    code, _, err = signal_when_training(args, tmp_path)
    assert code == 75, err  # Stopped.exit_status: preempted, not finished
    assert "ganrun: stopped: SIGTERM at step" in err
    assert "continue with: ganrun train resume=" in err
    (step, path), *_ = reversed(ckpt.step_checkpoints(run / "checkpoints"))
    assert 3 <= step < 100000
    r = ganrun("train", f"resume={run}", f"trainer.steps={step + 2}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ckpt.step_checkpoints(run / "checkpoints")[-1][0] == step + 2

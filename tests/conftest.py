"""Shared fixtures: compose the real config tree with tiny overrides."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from ganrun.config import register_configs
from ganrun.paths import conf_dir

# The networks here are tiny: one thread avoids intra-op synchronisation that
# costs more than it saves (and oversubscription when the machine is busy).
torch.set_num_threads(1)

# Small enough to train a step in well under a second on a CPU core; every
# model option has an entry (tests/test_config.py checks that).
TINY_MODEL = {
    "dcgan": ["model.width=8", "model.z_dim=16"],
    "vanilla": ["model.width=40", "model.z_dim=16"],
    "cgan": ["model.width=48", "model.z_dim=8"],
    "infogan": [
        "model.width=4",
        "model.noise_dim=4",
        "model.G.fc_width=16",
        "model.D.fc_width=16",
        "model.D.q_width=8",
    ],
    "wgan": ["model.width=4", "model.z_dim=8"],
    "wgan_gp": ["model.width=4", "model.z_dim=8"],
    "sngan": ["model.width=2", "model.z_dim=8"],
    "sngan_resnet": ["model.width=4", "model.z_dim=8"],
    "sagan": ["model.width=2", "model.z_dim=16"],
    "biggan": ["model.width=2", "model.z_dim=16", "model.shared_dim=8"],
    "stylegan": ["model.width=8", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2"],
    "pacgan_mlp": ["model.width=16", "model.pack=2"],
    "ebgan": ["model.width=4", "model.z_dim=8"],
    "began": ["model.width=4", "model.z_dim=8", "model.h_dim=8"],
    "unrolled": ["model.width=16", "model.z_dim=8", "regularizer.unrolled.steps=2"],
    "lsgan": ["model.width=2", "model.z_dim=8"],
    "dragan": ["model.width=8", "model.z_dim=8"],
    "acgan": ["model.width=12", "model.z_dim=8"],
}

TINY_TRAINER = [
    "trainer.steps=3",
    "trainer.batch_size=16",
    "trainer.device=cpu",
    "trainer.progress=false",
    "trainer.log_every=1",
    "trainer.image_every=2",
    "trainer.checkpoint_every=2",
    "trainer.n_fixed=4",
    "trainer.num_workers=0",
]


def compose_config(overrides=(), config_name: str = "train", hydra: bool = False) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(
            config_name=config_name, overrides=list(overrides), return_hydra_config=hydra
        )


def tiny_overrides(model: str = "dcgan", dataset: str = "mnist_embedded", *extra: str) -> list[str]:
    return [
        f"model={model}",
        f"dataset={dataset}",
        *TINY_MODEL.get(model, []),
        *TINY_TRAINER,
        *extra,
    ]


def run_train(run_dir: Path, overrides) -> tuple[DictConfig, dict]:
    """Compose like `ganrun train <overrides>` and train into run_dir (in-process)."""
    from ganrun.commands.train import train

    cfg = compose_config(overrides, hydra=True)
    choices = {
        k: v
        for k, v in cfg.hydra.runtime.choices.items()
        if not k.startswith("hydra") and v is not None
    }
    task = list(cfg.hydra.overrides.task)
    with open_dict(cfg):
        del cfg["hydra"]
    result = train(cfg, run_dir, choices, task)
    return cfg, result


@pytest.fixture
def compose_cfg():
    return compose_config


@pytest.fixture
def tiny():
    return tiny_overrides


@pytest.fixture
def as_dict():
    return lambda cfg: OmegaConf.to_container(cfg, resolve=True)


def cli_error(args: list[str], capsys) -> str:
    """``ganrun <args>`` in-process must fail with one line on stderr, exit 2, no traceback."""
    from hydra.core.global_hydra import GlobalHydra

    from ganrun import cli

    try:
        with pytest.raises(SystemExit) as e:
            cli.main(args)
    finally:
        GlobalHydra.instance().clear()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def assert_resume_is_exact(tmp_path: Path, overrides: list[str], steps: int, split: int) -> None:
    """Training ``steps`` straight and ``split`` + a resume to ``steps`` (checkpoints
    every ``split`` steps) end with bit-identical models."""
    from ganrun import checkpoint as ckpt

    base = [*overrides, f"trainer.checkpoint_every={split}"]
    run_train(tmp_path / "straight", [*base, f"trainer.steps={steps}"])
    run_train(tmp_path / "split", [*base, f"trainer.steps={split}"])
    run_train(tmp_path / "split", [*base, f"trainer.steps={steps}", f"resume={tmp_path / 'split'}"])
    a, b = ckpt.load(tmp_path / "straight")[1], ckpt.load(tmp_path / "split")[1]
    for part in a["models"]:
        for k, v in a["models"][part].items():
            assert torch.equal(v, b["models"][part][k]), f"{part}.{k}"


# --------------------------------------------------------------------------- the CLI
def ganrun_exe() -> str:
    """The installed `ganrun` console script of this venv."""
    exe = shutil.which("ganrun", path=str(Path(sys.executable).parent)) or shutil.which("ganrun")
    if exe is None:
        pytest.fail("the `ganrun` console script is not installed (pip install -e .)")
    return exe


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **extra}


def ganrun(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`ganrun <args>` as a subprocess, output captured."""
    return subprocess.run(
        [ganrun_exe(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env=cli_env(),
    )  # fmt: skip


def signal_when_training(
    args: list[str], cwd: Path, sig: int = signal.SIGTERM
) -> tuple[int, str, str]:
    """Start `ganrun <args>` (a long run with trainer.log_every=1 and the progress bar
    off), send ``sig`` once step 3 is logged, and return (exit status, stdout, stderr)."""
    proc = subprocess.Popen(
        [ganrun_exe(), *args], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        seen = []
        for line in proc.stdout:  # wait until training is under way
            seen.append(line)
            if "step 3/" in line or time.time() > deadline:
                break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, "".join(seen) + out, err

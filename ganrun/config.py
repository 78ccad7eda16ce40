"""Structured-config schemas for the plain settings.

The top-level ``train`` and ``sample`` configs are validated against these
dataclasses when Hydra composes them, so an unknown key or a value of the wrong
type fails before anything runs. The nodes that build objects (``model``,
``loss``, ``optimizer``, ``dataset``, ``regularizer``) are checked against the
signature of their ``_target_`` instead (see ``ganrun.build.validate``), so the
class stays the single source of truth for its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrainerConfig:
    steps: int = 3000  # generator steps
    batch_size: int = 64
    n_critic: int = 1  # discriminator steps per generator step (k in Goodfellow et al., Alg. 1)
    device: str = "auto"  # auto = cuda if available, else mps, else cpu
    checkpoint_every: int = (
        1000  # generator steps between checkpoints (one is always written at the end)
    )
    keep_checkpoints: int = 3  # the newest K step checkpoints are kept
    log_every: int = 50  # scalars to TensorBoard / progress bar
    image_every: int = 500  # fixed-z grid to TensorBoard and samples/
    n_fixed: int = 64  # size of the fixed z batch used for progress grids
    ema_decay: Optional[float] = None  # EMA of G weights per step; null = off
    ema_halflife_kimg: Optional[float] = None  # alternative: half-life in thousands of images
    ema_start: int = 0  # generator step at which EMA starts averaging (copies G before)
    num_workers: int = 2  # DataLoader workers for datasets streamed from files
    progress: bool = True  # progress bar with ETA and current losses
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    subdir: str = "tb"  # event files go to <run dir>/<subdir>


@dataclass
class TrainConfig:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    dataset: Any = MISSING
    regularizer: Any = field(default_factory=dict)
    seed: int = 0
    resume: Optional[str] = None  # run dir or checkpoint file to continue


@dataclass
class SampleConfig:
    ckpt: str = MISSING  # run dir or checkpoint file
    n: int = 64
    nrow: int = 8
    seed: int = 0
    out: Optional[str] = (
        None  # PNG file (or folder with per_image); default: <hydra run dir>/samples.png
    )
    per_image: bool = False  # write n single PNGs into the folder `out`
    interpolate: bool = False  # rows of spherical interpolations between random latent pairs
    steps: int = 8  # interpolation points per row (with interpolate=true)
    truncation: Optional[float] = None  # truncation trick threshold (models with a normal prior)
    use_ema: bool = True  # sample from G_ema when the checkpoint has one
    device: str = "auto"


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="sample_schema", node=SampleConfig)

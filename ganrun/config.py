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
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass
class TrainerConfig:
    steps: int = 3000  # generator steps
    # the global batch: under torchrun each of N ranks trains on batch_size / N
    # (it must divide), so a recipe's batch, kimg and EMA half-lives mean the same there
    batch_size: int = 64
    n_critic: int = 1  # discriminator steps per generator step (k in Goodfellow et al., Alg. 1)
    # extra critic training as data (WGAN's reference code: 100 critic steps for the first
    # 25 generator steps and every 500th); null = off
    n_critic_warmup: Optional[int] = None
    n_critic_warmup_steps: int = 0  # the first N generator steps get n_critic_warmup
    n_critic_warmup_every: int = 0  # ... and every M-th generator step (0 = never)
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
    # a non-finite loss, grad norm, weight or buffer (checked on log steps and before
    # every checkpoint, docs/RELIABILITY.md): stop (exit status 3), or rollback to
    # the last good checkpoint with both learning rates times rollback_lr_factor
    on_nan: str = "stop"
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3  # rollbacks per run before giving up as with stop
    # without resume=, a run dir that already holds this run's checkpoints (same
    # settings) is continued from its newest (a requeued job); false refuses to start
    # there instead. Another run's checkpoints are always refused (docs/RELIABILITY.md)
    auto_resume: bool = True
    # CPU threads for torch (torch.set_num_threads); null = torch's default (all cores).
    # Parallel sweep jobs set it so that they do not oversubscribe the cores
    threads: Optional[int] = None
    # speed (docs/ARCHITECTURE.md, "Precision and distributed training"):
    # fp32 | bf16 (autocast) | fp16 (autocast + a GradScaler per optimizer)
    precision: str = "fp32"
    channels_last: bool = False  # networks and image batches in channels_last memory format
    # torch.compile of G and D; steps with a second-order term active (GP, R1, consensus)
    # run them uncompiled, as torch.compile does not support double backward
    compile: bool = False
    # torch.compile's mode: null (its default), reduce-overhead, max-autotune,
    # max-autotune-no-cudagraphs
    compile_mode: Optional[str] = None
    # under torchrun: BatchNorm statistics over the global batch (CUDA only); without it
    # each rank normalizes with its own batch's statistics
    sync_batchnorm: bool = False


@dataclass
class LoggerConfig:
    """Where scalars, pictures and the end-of-run hparams go (ganrun/training/loggers.py).
    Each option of the multi-select group conf/logger/ switches on its own backend, so
    ``logger=[tensorboard,csv,wandb]`` merges three files that each set one flag; the
    flags are off here and ``logger: [tensorboard]`` in conf/train.yaml is the default."""

    tensorboard: bool = False
    subdir: str = "tb"  # event files go to <run dir>/<subdir>
    csv: bool = False
    csv_file: str = "metrics.csv"  # <run dir>/<csv_file>: step, kimg, wall_time, every scalar
    wandb: bool = False  # Weights & Biases (pip install 'ganrun[wandb]')
    wandb_project: str = "ganrun"
    wandb_entity: Optional[str] = None  # null = wandb's default entity
    # online, offline or disabled; null = $WANDB_MODE, else online (offline needs no network
    # or account: `wandb sync <run dir>/wandb/offline-run-*` uploads it later)
    wandb_mode: Optional[str] = None
    wandb_name: Optional[str] = None  # null = the run dir's last two parts (date/time, sweep/job)
    wandb_group: Optional[str] = None  # e.g. one name for a sweep's jobs
    wandb_tags: list[str] = field(default_factory=list)


@dataclass
class EvalSettingsBase:
    """What to measure and how: shared by `eval` (during training) and `ganrun eval`."""

    metrics: list[str] = field(default_factory=list)  # fid, is, kid, prc, modes; [] = off
    n: int = 10000  # generated images for fid/is/kid/prc
    n_real: Optional[int] = None  # reference images: null = the whole split
    n_modes: Optional[int] = None  # samples for modes: null = 2,500 (2-D) / 26,000 (images)
    features: str = "inception-v3-compat"  # or a fitted evaluator (ganrun fit-evaluator)
    split: Optional[str] = "test"  # reference split; null = the training split
    inception_weights: Optional[str] = None  # local weights file (else $GANRUN_INCEPTION_WEIGHTS)
    cache_dir: Optional[str] = None  # null = $GANRUN_CACHE or ~/.cache/ganrun
    batch_size: int = 64
    seed: int = 0  # latents of the generated samples, and the real subset with n_real
    classifier: str = "mnist-classifier"  # modes on images (stacked MNIST): the fitted classifier


@dataclass
class EvalConfig(EvalSettingsBase):
    every: int = 5000  # generator steps between evaluations (also at the last step)
    best: Optional[str] = "fid"  # score that picks checkpoints/best.pt (null = none)
    required: bool = True  # false: a metric that cannot run is skipped with one warning


@dataclass
class SweepConfig:
    """The one number `ganrun train` returns to a sweeper (docs/SWEEPS.md)."""

    # a score of metrics.jsonl: fid, is, modes, ... or fid[mnist-classifier]; null = eval.best
    metric: Optional[str] = None
    reduce: str = "best"  # best: over the run's evaluations; final: the last one
    # minimize / maximize; null = the score's own, and a contradicting one is refused
    direction: Optional[str] = None


@dataclass
class TrainConfig:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    model: Any = MISSING
    loss: Any = MISSING
    optimizer: Any = MISSING
    dataset: Any = MISSING
    regularizer: Any = field(default_factory=dict)
    augment: Any = field(default_factory=dict)  # D's input augmentation (conf/augment/)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 0
    resume: Optional[str] = None  # run dir or checkpoint file to continue


@dataclass
class RejectionConfig:
    """Discriminator rejection sampling (Azadi et al. 2019; ganrun.rejection)."""

    method: Optional[str] = None  # null = plain samples of G; drs
    steps: int = 10000  # training steps of the per-sample discriminator on the frozen G
    batch_size: int = 500  # real and generated samples per estimator step; candidates per draw
    lr: float = 0.001  # Adam (0.5, 0.999), decayed linearly to 0
    # gamma = this percentile of F(x) per candidate batch (eq. 8); null = gamma 0 (exact)
    percentile: Optional[float] = 95.0
    burn_in: int = 10000  # samples whose largest logit starts logit_max
    seed: int = 0  # the estimator's training stream and burn-in
    max_draws: int = 200  # fail when fewer than 1 in max_draws candidates are accepted


@dataclass
class ArithmeticConfig:
    """Latent vector arithmetic (Radford et al. 2015, Sec. 6.3; ganrun.sampling.arithmetic):
    tiles of the grid that ``numbered=true`` draws with the same seed= and n=."""

    a: list[int] = field(default_factory=list)  # tiles whose mean z is A
    b: list[int] = field(default_factory=list)  # ... B (subtracted)
    c: list[int] = field(default_factory=list)  # ... C (added): the result is A - B + C
    noise: int = 8  # results with uniform noise added to A - B + C (the paper's Fig. 7: 8)
    noise_scale: float = 0.25  # that noise is U(-scale, scale) per dimension (Fig. 7: 0.25)


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
    steps: int = 8  # points per row with interpolate=true, or traverse=true on a continuous code
    # class-conditional models: all samples of this class (default: one row per class)
    class_idx: Optional[int] = None
    traverse: bool = False  # latent-code models (infogan): vary one code along each row
    code: int = 0  # with traverse: which code (categorical codes first, then continuous)
    traverse_range: float = 2.0  # continuous codes vary over [-range, range] (InfoGAN Fig. 2)
    truncation: Optional[float] = None  # truncation trick threshold (models with a normal prior)
    # (StyleGAN: psi in W, w' = w_avg + psi (w - w_avg))
    # style-based models (stylegan): the style-mixing grid of Karras et al. 2019, Fig. 3
    mixing: bool = False
    mixing_columns: int = 5  # source A images across the top
    mixing_rows: int = 2  # source B rows for each of the coarse, middle and fine groups
    # the plain grid with each tile's number (0..n-1) drawn above it: pick exemplars for
    # arithmetic.* from it (same seed= and n=)
    numbered: bool = False
    # DCGAN latent vector arithmetic: arithmetic.a=[..] arithmetic.b=[..] arithmetic.c=[..]
    arithmetic: ArithmeticConfig = field(default_factory=ArithmeticConfig)
    use_ema: bool = True  # sample from G_ema when the checkpoint has one
    # plain grids of unconditional models: keep only what discriminator rejection
    # sampling accepts (rejection.method=drs; the estimator is shared with ganrun eval)
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    device: str = "auto"


@dataclass
class EvaluateConfig(EvalSettingsBase):
    """ganrun eval: the scores of one or more checkpoints."""

    ckpt: Any = MISSING  # run dir or checkpoint file, or a list of them
    metrics: list[str] = field(default_factory=lambda: ["fid", "is", "kid", "prc"])
    out: Optional[str] = None  # JSON file; default: <run dir>/eval/<checkpoint>.json
    history: bool = False  # also tabulate the run's metrics.jsonl (training-time evaluations)
    use_ema: bool = True  # G_ema when the checkpoint has one
    truncation: Optional[float] = None
    # samples through discriminator rejection sampling (rejection.method=drs); scores
    # measured so carry it in their protocol and get their own table
    rejection: RejectionConfig = field(default_factory=RejectionConfig)
    device: str = "auto"


@dataclass
class FitEvaluatorConfig:
    """ganrun fit-evaluator: a classifier for offline IS/FID/KID and mode counting."""

    dataset: Any = MISSING
    name: str = "mnist-classifier"  # eval.features=<name> uses it
    out: Optional[str] = None  # default: <cache_dir>/evaluators/<name>.pt
    cache_dir: Optional[str] = None
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.003
    width: int = 32
    feature_dim: int = 128
    held_out_split: str = "test"
    min_accuracy: float = 0.98  # refuse to save a weaker classifier
    seed: int = 0
    device: str = "auto"


@dataclass
class FetchWeightsConfig:
    out: Optional[str] = None  # default: torch.hub's cache, where torch-fidelity looks


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="fit_evaluator_schema", node=FitEvaluatorConfig)
    cs.store(name="fetch_weights_schema", node=FetchWeightsConfig)
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="sample_schema", node=SampleConfig)
    # `${scale:${model.width},1,6}` = width * 1 // 6: lets a recipe size every layer
    # from model.width (the one knob that scales both networks) in its paper's ratios
    OmegaConf.register_new_resolver("scale", _scale, replace=True)
    # `resolution: ${recipe_resolution:28}` in an image dataset's file: its size under
    # the chosen recipe (docs/ARCHITECTURE.md, "Recipes also pick the data's size")
    OmegaConf.register_new_resolver("recipe_resolution", _recipe_resolution, replace=True)
    # ${ganrun.run_name:}: the readable part of a run dir's name (conf/train.yaml)
    from ganrun.runname import register as register_run_name

    register_run_name()


def _recipe_resolution(native: int, *, _root_: DictConfig) -> int:
    """model.recipe.dataset.resolution if the recipe sets one (a size), else the
    dataset's native size raised to model.recipe.dataset.min_resolution (a floor).
    Outside a train config (no model) the native size."""
    size = OmegaConf.select(_root_, "model.recipe.dataset.resolution", default=None)
    if size is not None:
        return int(size)
    floor = OmegaConf.select(_root_, "model.recipe.dataset.min_resolution", default=0)
    return max(int(native), int(floor))


def _scale(value: int, num: int, den: int = 1) -> int:
    return int(value) * int(num) // int(den)

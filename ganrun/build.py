"""Turns a composed config into objects. The only caller of hydra.utils.instantiate.

``validate(cfg)`` checks everything that can be checked without building
(unknown keys and wrong types against each ``_target_``'s signature, whether
the model can serve the dataset) so bad input fails before a run starts.
"""

from __future__ import annotations

import copy
import inspect
import logging
import types
import typing
from dataclasses import dataclass
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ganrun.data.base import ArraySource, DataSource, StreamSource
from ganrun.errors import ConfigError, GanrunError
from ganrun.objective import Objective
from ganrun.optim import OptimizerRecipe
from ganrun.training.guard import ON_NAN
from ganrun.training.precision import check_settings as check_speed_settings

# Model constructor arguments that ganrun supplies (from the dataset), never the YAML.
INJECTED = {"data_shape", "num_classes"}
# Top-level nodes whose _target_ sub-nodes are checked against signatures.
TARGET_ROOTS = ("model", "loss", "optimizer", "dataset", "regularizer", "augment")


# --------------------------------------------------------------------------- validation
def _type_ok(value: Any, hint: Any) -> bool:
    if hint is inspect.Parameter.empty or hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple, ListConfig)):
            return False
        args = typing.get_args(hint)
        return (
            not args or all(_type_ok(v, args[0]) for v in value)
            if origin is list or hint is list
            else True
        )
    if origin is dict or hint is dict:
        return isinstance(value, (dict, DictConfig))
    return True  # unknown annotation: let the constructor judge


def _type_name(hint: Any) -> str:
    s = getattr(hint, "__name__", None) if typing.get_origin(hint) is None else None
    return s or str(hint).replace("typing.", "")


def _check_target_node(path: str, node: DictConfig, injected: set[str]) -> None:
    target = node.get("_target_")
    hydra_log = logging.getLogger("hydra.utils")  # get_class logs its failure: one line only
    level, hydra_log.disabled = hydra_log.disabled, True
    try:
        cls = get_class(target) if isinstance(target, str) else None
    except Exception:
        cls = None
    finally:
        hydra_log.disabled = level
    if cls is None:
        raise ConfigError(f"{path}._target_={target!r} is not an importable class")
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:
        hints = {}
    params = {
        n: p
        for n, p in sig.parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    settable = sorted(n for n in params if n not in injected)
    for key in node.keys():
        key = str(key)
        if key.startswith("_"):
            continue
        if key in injected:
            raise ConfigError(
                f"{path}.{key} is set by ganrun from the dataset; remove it from the config"
            )
        if key not in params:
            if accepts_kwargs:
                continue
            raise ConfigError(
                f"{path}.{key} is not a parameter of {cls.__name__}; valid: {', '.join(settable)}"
            )
        value = node[key]
        if isinstance(value, DictConfig) and "_target_" in value:
            continue  # a nested object, checked on its own
        if not _type_ok(value, hints.get(key, inspect.Parameter.empty)):
            raise ConfigError(
                f"{path}.{key}={value!r} has the wrong type: {cls.__name__} expects {_type_name(hints[key])}"
            )
    for name, p in params.items():
        if name not in injected and p.default is inspect.Parameter.empty and name not in node:
            raise ConfigError(f"{path}.{name} is required by {cls.__name__}")


def _walk_targets(path: str, node: Any):
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield path, node
        for k in node.keys():
            yield from _walk_targets(f"{path}.{k}", node[k])


def check_targets(cfg: DictConfig, roots: tuple[str, ...] = TARGET_ROOTS) -> None:
    """Every ``_target_`` node under ``roots``: its keys against the class's signature."""
    for root in roots:
        if root in cfg and cfg[root] is not None:
            for path, node in _walk_targets(root, cfg[root]):
                _check_target_node(path, node, INJECTED if root == "model" else set())


# Optimizer arguments torch checks only when the optimizer is built (in the run dir,
# with a traceback): (lowest valid value, whether the lowest itself is valid)
_OPTIMIZER_BOUNDS = {
    "lr_g": (0.0, False),
    "lr_d": (0.0, False),
    "eps": (0.0, True),
    "weight_decay": (0.0, True),
    "momentum": (0.0, True),
    "momentum_final": (0.0, True),
    "alpha": (0.0, True),
    "min_lr": (0.0, True),
}


def _check_optimizer_values(node: DictConfig) -> None:
    for key, (low, inclusive) in _OPTIMIZER_BOUNDS.items():
        value = node.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not (value >= low if inclusive else value > low) or value == float("inf"):
                bound = f"{'>=' if inclusive else '>'} {low:g}"
                raise ConfigError(
                    f"optimizer.{key}={value} is not valid: it must be a finite number {bound}"
                )
    betas = node.get("betas")
    if betas is not None:
        values = list(betas) if isinstance(betas, (list, tuple, ListConfig)) else [betas]
        if len(values) != 2 or not all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0
            for b in values
        ):
            raise ConfigError(
                f"optimizer.betas={list(values)} is not valid: two numbers in [0, 1), e.g. [0.5,0.999]"
            )


def _dataset_size(data: DataSource, key: str) -> int | None:
    """How many samples a finite dataset holds (None for endless samplers). Cached by
    the dataset's config: a multirun preflight checks each job, and train reads the
    data again anyway."""
    if key in _SIZES:
        return _SIZES[key]
    size = None
    if isinstance(data, ArraySource):
        size = len(data)
    elif isinstance(data, StreamSource):
        size = len(data.dataset())
    _SIZES[key] = size
    return size


_SIZES: dict[str, int | None] = {}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for anything wrong that shows before building."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} is required: set {missing[0]}=<value> on the command line")
    try:
        OmegaConf.resolve(copy.deepcopy(cfg))
    except OmegaConfBaseException as e:
        raise ConfigError(_omegaconf_message(e)) from None
    check_targets(cfg)
    for part in ("G", "D"):
        node = cfg.model.get(part) if isinstance(cfg.model, DictConfig) else None
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(
                f"model.{part} is missing or not a node: a model config needs G and D nodes with _target_"
            )
    data = build_dataset(cfg)
    data.check()
    shape, classes = data.data_shape, data.num_classes
    for part in ("G", "D"):
        why = get_class(cfg.model[part]._target_).check_data(shape, classes)
        if why:
            raise ConfigError(f"model={cfg.model.get('name', '?')}: {why}")
    t = cfg.trainer
    for key in (
        "steps",
        "batch_size",
        "n_critic",
        "checkpoint_every",
        "log_every",
        "image_every",
        "keep_checkpoints",
        "n_fixed",
    ):
        if t[key] < 1:
            raise ConfigError(f"trainer.{key} must be >= 1, got {t[key]}")
    if t.n_critic_warmup is not None and t.n_critic_warmup < 1:
        raise ConfigError(
            f"trainer.n_critic_warmup must be >= 1 (or null), got {t.n_critic_warmup}"
        )
    if t.n_critic_warmup_steps < 0 or t.n_critic_warmup_every < 0:
        raise ConfigError("trainer.n_critic_warmup_steps and n_critic_warmup_every must be >= 0")
    if t.ema_decay is not None and t.ema_halflife_kimg is not None:
        raise ConfigError("set trainer.ema_decay or trainer.ema_halflife_kimg, not both")
    if t.ema_decay is not None and not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"trainer.ema_decay must be in [0, 1), got {t.ema_decay}")
    if t.ema_halflife_kimg is not None and not t.ema_halflife_kimg > 0:
        raise ConfigError(f"trainer.ema_halflife_kimg must be > 0, got {t.ema_halflife_kimg}")
    if t.on_nan not in ON_NAN:
        raise ConfigError(
            f"trainer.on_nan={t.on_nan} is not valid; choose from {', '.join(ON_NAN)}"
        )
    if not 0.0 < t.rollback_lr_factor <= 1.0:
        raise ConfigError(
            f"trainer.rollback_lr_factor must be in (0, 1], got {t.rollback_lr_factor}"
        )
    if t.max_rollbacks < 0:
        raise ConfigError(f"trainer.max_rollbacks must be >= 0, got {t.max_rollbacks}")
    threads = t.get("threads")
    if threads is not None and threads < 1:
        raise ConfigError(f"trainer.threads must be >= 1 (or null: torch's default), got {threads}")
    for key in ("width", "z_dim"):  # the knobs every recipe sizes its layers from
        value = cfg.model.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ConfigError(f"model.{key} must be >= 1, got {value}")
    if t.num_workers < 0:
        raise ConfigError(
            f"trainer.num_workers must be >= 0 (0 = load in the main process), got {t.num_workers}"
        )
    size = _dataset_size(data, OmegaConf.to_yaml(cfg.dataset, resolve=True))
    if size is not None and t.batch_size > size:
        raise ConfigError(
            f"trainer.batch_size={t.batch_size} is larger than the dataset ({size} samples "
            f"in {data.describe()}); use trainer.batch_size <= {size}"
        )
    resolve_device(t.device)
    check_speed_settings(cfg)  # trainer.precision, compile, torchrun's batch per rank
    from ganrun.training.loggers import check as check_loggers

    check_loggers(cfg)  # e.g. logger=wandb without wandb installed
    regs = cfg.get("regularizer") or {}
    if "info" in regs and not (
        hasattr(get_class(cfg.model.G._target_), "split_latent")
        and hasattr(get_class(cfg.model.D._target_), "q_posterior")
    ):
        raise ConfigError(
            "regularizer=info needs a model with latent codes and a Q head (model=infogan)"
        )
    for node in regs.values():  # a regularizer that needs something of the networks says so
        check = getattr(get_class(node._target_), "check_models", None)
        why = check and check(
            get_class(cfg.model.G._target_), get_class(cfg.model.D._target_), classes
        )
        if why:
            raise ConfigError(why)
    # cheap to build, and building checks values and pairings (e.g. a regularizer
    # that needs a logistic loss) before a run dir exists
    objective = build_objective(cfg, classes)
    if objective.augment is not None:
        objective.augment.check_data(data.kind)
    _check_optimizer_values(cfg.optimizer)
    recipe = build_optimizer(cfg)
    try:  # torch's own checks of the remaining arguments, on a stand-in parameter
        opts = recipe.build(
            [torch.nn.Parameter(torch.zeros(1))], [torch.nn.Parameter(torch.zeros(1))]
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"optimizer={cfg.optimizer.get('_target_', '?').rsplit('.', 1)[-1]}: {e}; "
            "check the optimizer.* values"
        ) from None
    objective.bind_optimizers(*opts)  # a term that mirrors D's optimizer checks it here
    _check_energy_pairing(cfg, objective)


def _check_energy_pairing(cfg: DictConfig, objective: Objective) -> None:
    """An energy D (auto-encoder: EBGAN, BEGAN) returns reconstruction losses, not
    logits: only an energy loss reads it, and an energy loss reads nothing else."""
    d_energy = getattr(get_class(cfg.model.D._target_), "OUTPUT", "logit") == "energy"
    loss_energy = objective.loss.output == "energy"
    if d_energy and not loss_energy:
        raise ConfigError(
            f"model={cfg.model.get('name', '?')} has an energy discriminator (an auto-encoder); "
            f"loss={objective.loss.name} reads logits: use loss=ebgan or loss=began"
        )
    if loss_energy and not d_energy:
        raise ConfigError(
            f"loss={objective.loss.name} needs an energy discriminator (an auto-encoder: "
            f"model=ebgan or began), not model={cfg.model.get('name', '?')}"
        )


def _omegaconf_message(e: OmegaConfBaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    key = getattr(e, "full_key", None)
    if "Missing mandatory value" in msg and key:
        return f"{key} is required: set {key}=<value> on the command line"
    return f"{key}: {msg}" if key and key not in msg else msg


# --------------------------------------------------------------------------- building
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"trainer.device={name!r} is not a device; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={name} but no CUDA device is available; use trainer.device=auto or cpu"
        )
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ConfigError(
            f"trainer.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError(
            "trainer.device=mps but MPS is not available; use trainer.device=auto or cpu"
        )
    return device


def _instantiate(node: DictConfig, **kwargs):
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while (
            cause is not None and not isinstance(cause, GanrunError) and cause.__cause__ is not None
        ):
            cause = cause.__cause__
        if isinstance(cause, GanrunError):
            raise cause from None
        raise ConfigError(str(e).splitlines()[0]) from None


def build_dataset(cfg: DictConfig) -> DataSource:
    return _instantiate(cfg.dataset)


def takes_labels(node: DictConfig) -> bool:
    """Whether the model class of ``node`` is built class-conditional (it takes
    ``num_classes``; with a labelled dataset it then gets the dataset's classes)."""
    return "num_classes" in inspect.signature(get_class(node._target_).__init__).parameters


def build_network(node: DictConfig, data_shape, num_classes: int | None = None):
    """One network (a ``model.G`` / ``model.D`` node, or one derived from it) for data of
    ``data_shape``; ``num_classes`` goes to a class-conditional one when given."""
    kwargs = {"data_shape": tuple(data_shape)}
    if num_classes is not None and takes_labels(node):
        kwargs["num_classes"] = num_classes
    return _instantiate(node, **kwargs)


def build_models(cfg: DictConfig, data_shape, num_classes: int):
    return (
        build_network(cfg.model.G, data_shape, num_classes),
        build_network(cfg.model.D, data_shape, num_classes),
    )


def build_objective(cfg: DictConfig, num_classes: int) -> Objective:
    loss = _instantiate(cfg.loss)
    regs = {str(k): _instantiate(v) for k, v in (cfg.get("regularizer") or {}).items()}
    node = cfg.get("augment")
    augment = _instantiate(node) if node and node.get("_target_") else None
    return Objective(loss, regs, num_classes=num_classes, augment=augment)


def build_optimizer(cfg: DictConfig) -> OptimizerRecipe:
    return _instantiate(cfg.optimizer)


def ema_decay(trainer_cfg) -> float | None:
    """Per-step EMA decay: given directly, or from a half-life in kimg
    (beta = 0.5 ** (batch / (halflife_kimg * 1000)), as in StyleGAN2-ADA)."""
    if trainer_cfg.ema_decay is not None:
        return float(trainer_cfg.ema_decay)
    if trainer_cfg.ema_halflife_kimg is not None:
        return 0.5 ** (trainer_cfg.batch_size / (trainer_cfg.ema_halflife_kimg * 1000.0))
    return None


@dataclass
class Built:
    device: torch.device
    data: DataSource
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module | None
    objective: Objective
    recipe: OptimizerRecipe
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema_beta: float | None


def build(cfg: DictConfig) -> Built:
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    data = build_dataset(cfg)
    data.prepare()  # read/scan the data now: a missing file fails before training starts
    G, D = build_models(cfg, data.data_shape, data.num_classes)
    G, D = G.to(device), D.to(device)
    beta = ema_decay(cfg.trainer)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if beta is not None else None
    objective = build_objective(cfg, data.num_classes)
    recipe = build_optimizer(cfg)
    opt_g, opt_d = recipe.build(G.parameters(), D.parameters())
    objective.bind_optimizers(opt_g, opt_d)
    return Built(device, data, G, D, G_ema, objective, recipe, opt_g, opt_d, beta)

"""What a run says about itself when it starts: ``<run dir>/config.yaml`` (the config it
trains with, every interpolation resolved: the recipe's numbers, not
``${oc.select:model.recipe...}``) and one log line with the recipe's key numbers.

Hydra's ``.hydra/config.yaml`` keeps the config as composed (interpolations
unresolved) and is not written for a resumed run; ``config.yaml`` is rewritten at
every start, so it always shows what the last start ran (a resume's
``trainer.steps=...`` included). Names no model: it reads the nodes every recipe has.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ganrun import fsio

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
_HEADER = (
    "# The config this run trains with, resolved (written by ganrun train at every start;\n"
    "# .hydra/config.yaml is the config as composed, with interpolations).\n"
)
# optimizer settings worth a glance (those the node has)
_OPTIMIZER_KEYS = ("lr_g", "lr_d", "betas", "momentum", "alpha", "schedule")
_MODEL_KEYS = ("z_dim", "width", "resolution")


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple, ListConfig)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _target_name(node: Any) -> str | None:
    if isinstance(node, (DictConfig, Mapping)) and node.get("_target_"):
        return str(node["_target_"]).rsplit(".", 1)[-1]
    return None


def _regularizer(name: str, node: Any) -> str:
    """``gp(weight=10)``: a regularizer with its strength (weight, gamma, ...)."""
    if not isinstance(node, Mapping):
        return str(name)
    strength = [
        f"{k}={_value(v)}"
        for k, v in node.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
        and (k in ("weight", "gamma", "lam", "coef") or k.endswith("_weight"))
    ]  # fmt: skip
    return f"{name}({', '.join(strength)})" if strength else str(name)


def recipe_line(cfg: DictConfig, choices: Mapping[str, Any] | None = None) -> str:
    """``recipe: loss nonsaturating | optimizer adam lr_g=0.0002 ... | 3000 steps, batch 64,
    n_critic 1 | z_dim=100 width=64 | EMA off | seed 0``, from the resolved config."""
    choices = dict(choices or {})
    c = OmegaConf.to_container(cfg, resolve=True)
    parts = []
    loss = choices.get("loss") or _target_name(c.get("loss")) or "?"
    parts.append(f"loss {loss}")
    regs = c.get("regularizer") or {}
    if isinstance(regs, Mapping) and regs:
        parts.append("regularizers " + ", ".join(_regularizer(k, v) for k, v in regs.items()))
    opt = c.get("optimizer") or {}
    shown = " ".join(f"{k}={_value(opt[k])}" for k in _OPTIMIZER_KEYS if k in opt)
    parts.append(
        f"optimizer {choices.get('optimizer') or _target_name(opt) or '?'} {shown}".strip()
    )
    t = c.get("trainer") or {}
    parts.append(
        f"{t.get('steps')} steps, batch {t.get('batch_size')}, n_critic {t.get('n_critic')}"
    )
    model = c.get("model") or {}
    sizes = " ".join(f"{k}={_value(model[k])}" for k in _MODEL_KEYS if k in model)
    if sizes:
        parts.append(sizes)
    if t.get("ema_decay") is not None:
        parts.append(f"EMA decay {_value(t['ema_decay'])}")
    elif t.get("ema_halflife_kimg") is not None:
        parts.append(f"EMA half-life {_value(t['ema_halflife_kimg'])} kimg")
    else:
        parts.append("EMA off")
    parts.append(f"seed {c.get('seed')}")
    return "recipe: " + " | ".join(parts)


def announce(cfg: DictConfig, run_dir: Path, choices: Mapping[str, Any] | None = None) -> Path:
    """Write ``<run dir>/config.yaml`` (resolved) and log the recipe line; returns the file."""
    path = Path(run_dir) / CONFIG_FILE
    text = _HEADER + OmegaConf.to_yaml(cfg, resolve=True)
    fsio.atomic_write_text(path, text)
    log.info("%s | resolved config: %s", recipe_line(cfg, choices), path)
    return path

"""The divergence guard: non-finite numbers stop a run (or roll it back) without a
device sync per step. See docs/RELIABILITY.md.

What the trainer checks, and when:

* the logged values (losses, D's outputs, gradient norms): averages over the log
  interval, so a NaN at any step of it shows; the loop reads them back on log
  steps anyway, so checking them costs nothing;
* the weights and floating-point buffers (BatchNorm running statistics,
  spectral-norm vectors) of G, D and G_ema: on log steps and whenever the trainer
  hands out the generator (progress pictures, hooks such as evaluation, and every
  checkpoint, best.pt included);
* both optimizers' state, before a checkpoint is written.

Each check is one host-device sync however many tensors it covers: every tensor
gives a 0-d "all finite" flag on its own device, and the flags are read back
together.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ganrun import checkpoint as ckpt
from ganrun.errors import CheckpointError, DivergenceError

log = logging.getLogger(__name__)

ON_NAN = ("stop", "rollback")


def nonfinite_values(values: Mapping[str, float]) -> list[str]:
    """Names of the logged values that are NaN or infinite."""
    return [k for k, v in values.items() if not math.isfinite(float(v))]


def nonfinite_parts(parts: Mapping[str, Iterable[torch.Tensor]]) -> list[str]:
    """Names of the parts (e.g. "D weights") holding a NaN or an infinity. Integer
    tensors (BatchNorm's num_batches_tracked) are skipped. One read-back per device."""
    flags: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, tensors in parts.items():
        for t in tensors:
            if t.is_floating_point() or t.is_complex():
                flags.setdefault(t.device, []).append((name, torch.isfinite(t.detach()).all()))
    bad: set[str] = set()
    for items in flags.values():
        ok = torch.stack([f for _, f in items]).tolist()
        bad.update(name for (name, _), good in zip(items, ok) if not good)
    return [name for name in parts if name in bad]


def module_parts(name: str, module: torch.nn.Module) -> dict[str, list[torch.Tensor]]:
    return {
        f"{name} weights": list(module.parameters()),
        f"{name} buffers": list(module.buffers()),
    }


def optimizer_parts(name: str, opt: torch.optim.Optimizer) -> dict[str, list[torch.Tensor]]:
    return {
        f"{name} optimizer state": [
            v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)
        ]
    }


def nonfinite_keys(state_dict: Mapping[str, Any]) -> list[str]:
    """Keys of a (CPU) state dict whose tensors hold a NaN or an infinity."""
    return [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor)
        and (v.is_floating_point() or v.is_complex())
        and not bool(torch.isfinite(v).all())
    ]


class GuardState:
    """What the guard carries across rollbacks and resumes (in every checkpoint):
    how many rollbacks this run has made, and the product of their lr factors."""

    def __init__(self) -> None:
        self.rollbacks = 0
        self.lr_factor = 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "lr_factor": self.lr_factor}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rollbacks = int(state.get("rollbacks", 0))
        self.lr_factor = float(state.get("lr_factor", 1.0))


def earlier_finite_checkpoint(
    folder: Path, step: int, keys: Iterable[str] | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable step checkpoint in ``folder`` before ``step`` whose models
    ``keys`` (all of them when None) are finite, with its state; None when there is
    none. Unreadable files are skipped with a warning."""
    for s, candidate in reversed(ckpt.step_checkpoints(Path(folder))):
        if s >= step:
            continue
        try:
            state = ckpt.load_file(candidate)
            models = state["models"]
        except (CheckpointError, KeyError, TypeError) as err:
            log.warning("skipped %s: %s", candidate, err)
            continue
        names = list(models) if keys is None else list(keys)
        if not any(nonfinite_keys(models.get(k) or {}) for k in names):
            return candidate, state
    return None


def refuse_nonfinite(path: Path, state: Mapping[str, Any], keys: Iterable[str]) -> None:
    """CheckpointError (one line) when a model of the checkpoint (``keys``, e.g.
    ["G_ema"] for sampling) holds non-finite weights or buffers: it comes from a
    run that diverged, and everything drawn from it would be blank."""
    keys = [k for k in keys if k in state.get("models", {})]
    bad = {k: nonfinite_keys(state["models"][k]) for k in keys}
    bad = {k: v for k, v in bad.items() if v}
    if not bad:
        return
    where = "; ".join(
        f"{k} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})" for k, v in bad.items()
    )
    earlier = earlier_finite_checkpoint(Path(path).parent, int(state.get("step", 0)), keys)
    hint = (
        f"use an earlier checkpoint, e.g. {earlier[0]}"
        if earlier is not None
        else f"no earlier checkpoint in {Path(path).parent} has finite weights"
    )
    raise CheckpointError(f"{path}: non-finite weights in {where}: the run diverged; {hint}")


def rollback_target(
    run_dir: Path, e: DivergenceError, trainer_cfg, guard: GuardState, signalled: bool = False
) -> tuple[Path, dict[str, Any]]:
    """trainer.on_nan's decision after divergence ``e``: the step checkpoint to roll
    back to (the newest readable, finite one before ``e.step``) and its state; or
    ``e`` again as the run's one-line error, saying which checkpoint is the last good
    one, when on_nan=stop, after trainer.max_rollbacks rollbacks, with a stop signal
    pending, or when there is nothing to roll back to."""
    t = trainer_cfg
    found = earlier_finite_checkpoint(Path(run_dir) / ckpt.CKPT_DIR, e.step)
    last = (
        f"; the last good checkpoint is {found[0]}"
        if found is not None
        else "; no checkpoint was written before it"
    )
    if t.on_nan != "rollback":
        hint = " (lower the learning rates, or set trainer.on_nan=rollback)"
        raise DivergenceError(e.step, e.what, last + hint) from None
    if guard.rollbacks >= int(t.max_rollbacks):
        why = (
            f"; gave up after {guard.rollbacks} rollback(s) (trainer.max_rollbacks="
            f"{int(t.max_rollbacks)}, lr factor {guard.lr_factor:g})"
        )
        raise DivergenceError(e.step, e.what, why + last) from None
    if signalled:
        raise DivergenceError(e.step, e.what, "; a stop signal is pending" + last) from None
    if found is None:
        raise DivergenceError(
            e.step,
            e.what,
            f"; no finite checkpoint of this run before step {e.step} to roll back to",
        ) from None
    return found

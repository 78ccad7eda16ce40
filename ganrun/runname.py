"""Readable run-dir names: ``outputs/2026-12-02/10-31-05_dcgan_mnist_embedded_lr_d-4e-4``.

``conf/train.yaml`` names Hydra's run dir (and a multirun's job subdirs) with the
resolver ``${ganrun.run_name:}``: the model and the dataset, then the user's
overrides, each as ``<last key part>-<value>`` (a group choice as its option alone:
``loss=hinge`` -> ``hinge``), as StudioGAN and stylegan2-ada name their runs. The
name is a function of the job's overrides and group choices only, so the same
command (or a requeued job of a sweep, whose overrides are stored) names the same
dir, and it is filesystem-safe and capped in length (a long name keeps its start
and gets a hash of the whole).

``=`` and ``,`` are left out of names: a dir named with them could not be passed
back unquoted as ``resume=<dir>`` or ``ckpt=<dir>`` (Hydra's grammar reads ``=`` as
a second assignment and ``,`` as a sweep). A ``hydra.run.dir`` / ``hydra.sweep.*``
given on the command line replaces the whole pattern, as in any Hydra app.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

RESOLVER = "ganrun.run_name"
MAX_LENGTH = 64
# overrides that say how a run is executed or reported, not what it trains; sweepers
# and launchers add some of them (trainer.threads)
_SKIP = (
    "hydra",
    "resume",
    "logger",
    "trainer.threads",
    "trainer.progress",
    "trainer.num_workers",
    "trainer.device",
    "trainer.log_every",
    "trainer.image_every",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "hparams_search",
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _skipped(key: str) -> bool:
    return any(key == k or key.startswith((k + ".", k + "/")) for k in _SKIP)


def _clean(text: str, limit: int = 24) -> str:
    """``text`` with only filesystem-safe characters: a path becomes its last part,
    a list's brackets go, commas (lists, sweeps) become ``+``."""
    text = str(text).strip().strip("'\"")
    if "/" in text and not text.startswith("["):
        text = [p for p in text.split("/") if p][-1:] or [""]
        text = text[0]
    text = text.replace("[", "").replace("]", "").replace(",", "+")
    text = _UNSAFE.sub("-", text).strip("-.")
    return text[:limit]


def _part(key: str, value: str, choices: Mapping[str, Any]) -> str:
    if key in choices or "/" in key:  # a group: its option says it
        return _clean(value)
    return f"{_clean(key.rsplit('.', 1)[-1], 16)}-{_clean(value)}"


def run_name(
    overrides: Iterable[str],
    choices: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
) -> str:
    """``dcgan_mnist_embedded_hinge_lr_d-4e-4_seed-1`` from a job's overrides (as
    written) and its config-group choices. With ``only`` (a sweep's swept keys), just
    those overrides: ``seed-1``, the sweep dir says the rest."""
    choices = dict(choices or {})
    only = set(only) if only is not None else None
    given: dict[str, str] = {}
    parts: list[str] = []
    for text in overrides:
        key, eq, value = str(text).partition("=")
        key = key.lstrip("+~")
        if not eq or not key:
            continue
        if only is not None:
            if key in only:
                parts.append(_part(key, value, choices))
            continue
        if _skipped(key):
            continue
        if key in ("model", "dataset"):
            given[key] = value
            continue
        parts.append(_part(key, value, choices))
    if only is None:
        parts = [_clean(given.get(k, choices.get(k)) or "") for k in ("model", "dataset")] + parts
    unique: list[str] = []
    for p in parts:
        if p and p not in unique:
            unique.append(p)
    name = "_".join(unique) or "run"
    if len(name) > MAX_LENGTH:  # whole parts that fit, then a hash of the whole name
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        kept = unique[0][: MAX_LENGTH - 9]
        for p in unique[1:]:
            if len(kept) + 1 + len(p) > MAX_LENGTH - 9:
                break
            kept += "_" + p
        name = f"{kept}-{digest}"
    return name


def _resolve(*keys: str, _root_) -> str:
    """The resolver: reads the job's overrides and choices from Hydra's node. In a
    multirun, ``keys`` (the swept keys, which ``ganrun train -m`` passes) and the
    sweeper's own ``params`` keys are the ones shown."""
    from omegaconf import OmegaConf

    hydra = _root_.get("hydra") if hasattr(_root_, "get") else None
    if hydra is None:
        return "run"

    def raw(key: str, empty):  # as written: an override's ${...} is not resolved here
        node = OmegaConf.select(hydra, key, default=None)
        return OmegaConf.to_container(node, resolve=False) if node is not None else empty

    task, choices = raw("overrides.task", []), raw("runtime.choices", {})
    only = None
    mode = OmegaConf.select(hydra, "mode", default=None)
    if getattr(mode, "name", str(mode)) == "MULTIRUN":  # a RunMode enum in Hydra's node
        params = OmegaConf.select(hydra, "sweeper.params", default=None) or {}
        shown = {str(k) for k in keys if str(k)} | {str(k) for k in params}
        only = shown or None
    from ganrun.paths import config_groups

    # every group is a choice, also those choices do not list (regularizer=[gp,r1])
    choices = {**dict.fromkeys(config_groups()), **{str(k): v for k, v in choices.items()}}
    return run_name([str(t) for t in task], choices, only)


def sweep_subdir_override(swept: Iterable[str]) -> str:
    """``hydra.sweep.subdir=${hydra.job.num}_${ganrun.run_name:seed,model.width}``:
    how ``ganrun train -m`` tells each job which of its overrides the sweep varies."""
    keys = ",".join(sorted(set(swept)))
    return f"hydra.sweep.subdir=${{hydra.job.num}}_${{{RESOLVER}:{keys}}}"


def register() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve)

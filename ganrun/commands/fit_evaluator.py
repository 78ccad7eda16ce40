"""ganrun fit-evaluator dataset=mnist_embedded [name=mnist-classifier epochs=15 ...]

Trains the offline evaluator (``ganrun.metrics.classifier``) on the dataset's
split (``dataset.split``, train by default), measures its accuracy on the
held-out split (``held_out_split``, test), and saves it weights-only to
``<cache>/evaluators/<name>.pt`` — unless the accuracy is below
``min_accuracy``. ``eval.features=<name>`` (training) or ``features=<name>``
(``ganrun eval``) then registers it with torch-fidelity as a feature extractor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import ganrun
from ganrun import fsio
from ganrun.commands import report_errors
from ganrun.config import register_configs
from ganrun.errors import ConfigError, DataError, GanrunError
from ganrun.paths import conf_dir

log = logging.getLogger(__name__)


def _sources(cfg: DictConfig):
    from ganrun.build import build_dataset
    from ganrun.data.base import ArraySource
    from ganrun.metrics.evaluate import reference_source

    train = build_dataset(cfg)
    if train.kind != "image":
        raise ConfigError("fit-evaluator needs an image dataset with labels (e.g. mnist_embedded)")
    if train.num_classes < 2:
        raise ConfigError(
            "fit-evaluator needs class labels: this dataset has none (set dataset.labels=true?)"
        )
    if not isinstance(train, ArraySource):
        raise ConfigError(
            "fit-evaluator needs a dataset held in memory (mnist_embedded, mnist, ...)"
        )
    held, split = reference_source(cfg.dataset, cfg.held_out_split)
    if split == getattr(train, "split", None) or split == "all":
        raise ConfigError(
            f"held_out_split={cfg.held_out_split} is not a separate split of this dataset; "
            "the accuracy must be measured on images the classifier never saw"
        )
    return train, held


def check(cfg: DictConfig) -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    name = str(cfg.name)
    if not name or os.sep in name or name.strip() != name or name.endswith(".pt"):
        raise ConfigError(f"name={name!r} should be a plain name such as mnist-classifier")
    if name in FEATURE_EXTRACTORS_REGISTRY and not hasattr(
        FEATURE_EXTRACTORS_REGISTRY[name], "GANRUN_FITTED"
    ):
        raise ConfigError(f"name={name} is a torch-fidelity extractor; choose another name")
    for key in ("epochs", "batch_size", "width", "feature_dim"):
        if cfg[key] < 1:
            raise ConfigError(f"{key} must be >= 1, got {cfg[key]}")
    if not cfg.lr > 0 or cfg.lr == float("inf"):
        raise ConfigError(f"lr must be a learning rate > 0, e.g. lr=0.003; got {cfg.lr}")
    from ganrun.build import check_targets, resolve_device

    resolve_device(cfg.device)
    check_targets(cfg, ("dataset",))  # dataset.<key> against its class's signature
    if not 0 <= cfg.min_accuracy <= 1:
        raise ConfigError(f"min_accuracy must be in [0, 1], got {cfg.min_accuracy}")
    if cfg.out is not None and not str(cfg.out).endswith(".pt"):
        raise ConfigError(f"out={cfg.out} should name a .pt file")
    train, _ = _sources(cfg)
    train.check()
    if cfg.batch_size > len(train):
        raise ConfigError(
            f"batch_size={cfg.batch_size} is larger than the dataset ({len(train)} images); "
            f"use batch_size <= {len(train)}"
        )


def fit(cfg: DictConfig, dataset_name: str | None = None) -> Path:
    from ganrun.build import resolve_device
    from ganrun.data.base import to_unit_range
    from ganrun.metrics import classifier as clf
    from ganrun.metrics.features import evaluator_path

    check(cfg)
    out = Path(cfg.out).expanduser() if cfg.out else evaluator_path(str(cfg.name), cfg.cache_dir)
    elsewhere = "choose another out=<file>.pt" if cfg.out else "choose another cache_dir=..."
    # before the training: a read-only place, or a file where a folder should be
    fsio.check_writable(out, elsewhere)
    device = resolve_device(cfg.device)
    train, held = _sources(cfg)
    x_train, y_train = train.arrays()
    x_test, y_test = held.arrays()
    if y_train is None or y_test is None:
        raise DataError("fit-evaluator needs labels on both splits")
    log.info(
        "fitting %s on %d images of %s, measuring on %d held-out (%s)",
        cfg.name,
        len(x_train),
        train.describe(),
        len(x_test),
        held.describe(),
    )
    result = clf.train_classifier(
        to_unit_range(x_train),
        y_train,
        to_unit_range(x_test),
        y_test,
        num_classes=train.num_classes,
        epochs=int(cfg.epochs),
        batch_size=int(cfg.batch_size),
        lr=float(cfg.lr),
        width=int(cfg.width),
        feature_dim=int(cfg.feature_dim),
        seed=int(cfg.seed),
        device=device,
    )
    summary = (
        f"held-out accuracy {result.accuracy:.2%} on {len(x_test)} images "
        f"({result.epochs} epochs, {result.seconds:.0f} s)"
    )
    if result.accuracy < float(cfg.min_accuracy):
        raise GanrunError(
            f"{summary} is below min_accuracy={cfg.min_accuracy}: not saved "
            f"(train longer with epochs=, or lower min_accuracy)"
        )
    meta = {
        "name": str(cfg.name),
        "dataset": dataset_name or train.describe(),
        "held_out_split": str(cfg.held_out_split),
        "accuracy": float(result.accuracy),
        "n_train": len(x_train),
        "n_held_out": len(x_test),
        "epochs": int(result.epochs),
        "seconds": float(result.seconds),
        "seed": int(cfg.seed),
        "versions": {"ganrun": str(ganrun.__version__), "torch": str(torch.__version__)},
    }
    clf.save_classifier(result.model, out, meta, elsewhere=elsewhere)
    print(f"{summary}; saved {out}")
    print(
        f"use it with: ganrun train eval=offline eval.features={cfg.name}  (or features={cfg.name})"
    )
    return out


@hydra.main(config_path=str(conf_dir()), config_name="fit_evaluator", version_base="1.3")
def main(cfg: DictConfig):
    name = HydraConfig.get().runtime.choices.get("dataset")
    report_errors(lambda: fit(cfg, name))


register_configs()

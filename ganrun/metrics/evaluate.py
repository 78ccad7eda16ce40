"""One evaluation of a generator: samples, metrics, and the protocol they were measured under.

Used by the training hook (``ganrun.training.evaluation``) and by ``ganrun eval``.
Metric names: ``fid``, ``is``, ``kid``, ``prc`` (precision, recall, f_score) go
through torch-fidelity (``ganrun.metrics.fidelity``); ``modes`` calls
``ganrun.metrics.modes.mode_metrics`` (ring/grid/stacked MNIST).
Score names carry their feature extractor: ``fid[inception-v3-compat]``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun.errors import ConfigError, GanrunError
from ganrun.metrics import modes
from ganrun.metrics.sampling import generate

log = logging.getLogger(__name__)

IMAGE_METRICS = ("fid", "is", "kid", "prc")
METRICS = (*IMAGE_METRICS, "modes")
# Which way is better, by score name (without the [features] suffix).
LOWER_IS_BETTER = {"fid", "kid", "reverse_kl", "kl"}
HIGHER_IS_BETTER = {"is", "precision", "recall", "f_score", "modes", "high_quality"}
SCORES_OF = {
    "fid": ("fid",),
    "is": ("is", "is_std"),
    "kid": ("kid", "kid_std"),
    "prc": ("precision", "recall", "f_score"),
    "modes": ("modes", "high_quality", "reverse_kl", "kl"),
}
MODES_N_POINTS, MODES_N_IMAGES = 2_500, 26_000  # the VEEGAN / PacGAN (Lin et al. 2018) protocol


def base_name(score: str) -> str:
    return score.split("[", 1)[0]


def higher_is_better(score: str) -> bool:
    name = base_name(score)
    if name in LOWER_IS_BETTER:
        return False
    if name in HIGHER_IS_BETTER:
        return True
    raise ConfigError(f"no known direction for the score {score!r}")


@dataclass
class Settings:
    """What to measure and how (the shared part of eval.* and ganrun eval's keys)."""

    metrics: list[str]
    n: int = 10_000
    n_real: int | None = None
    n_modes: int | None = None
    features: str = "inception-v3-compat"
    split: str | None = "test"
    inception_weights: str | None = None
    cache_dir: str | None = None
    batch_size: int = 64
    seed: int = 0
    classifier: str = "mnist-classifier"

    @classmethod
    def from_config(cls, node: DictConfig | dict) -> Settings:
        d = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in keys})

    def check(self, data_kind: str | None = None) -> None:
        metrics = list(self.metrics)
        bad = [m for m in metrics if m not in METRICS]
        if bad:
            raise ConfigError(f"unknown metric {bad[0]!r}; choose from: {', '.join(METRICS)}")
        if len(set(metrics)) != len(metrics):
            raise ConfigError(f"metrics lists a metric twice: {metrics}")
        for key in ("n", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("n_real", "n_modes"):
            v = getattr(self, key)
            if v is not None and v < 2:
                raise ConfigError(f"{key} must be >= 2 or null, got {v}")
        if "is" in metrics and self.n < 10:
            raise ConfigError(f"is needs n >= 10 (10 splits), got n={self.n}")
        if data_kind == "points":
            img = [m for m in metrics if m in IMAGE_METRICS]
            if img:
                raise ConfigError(
                    f"{img[0]} needs image data; this dataset gives 2-D points: use metrics=[modes]"
                )


def best_score_name(best: str, settings: Settings, data_kind: str | None) -> str:
    """The full score name (``fid[inception-v3-compat]``) that picks the best checkpoint."""
    metric = next((m for m, names in SCORES_OF.items() if best in names), None)
    if metric is None:
        names = [n for m in settings.metrics for n in SCORES_OF.get(m, ())]
        raise ConfigError(f"eval.best={best} is not a score; choose from: {', '.join(names)}")
    if metric not in settings.metrics:
        raise ConfigError(f"eval.best={best} needs metric {metric} in eval.metrics")
    higher_is_better(best)
    return score_name(best, metric, settings, data_kind)


def score_name(name: str, metric: str, settings: Settings, data_kind: str | None) -> str:
    if metric in IMAGE_METRICS:
        return f"{name}[{_features_label(settings.features)}]"
    if metric == "modes" and data_kind == "image":
        return f"{name}[{_features_label(settings.classifier)}]"
    return name


def _features_label(features: str) -> str:
    return Path(features).stem if features.endswith(".pt") else features


def protocol_digest(protocol: dict[str, Any]) -> str:
    text = json.dumps(protocol, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def reference_source(dataset_cfg: DictConfig, split: str | None):
    """(DataSource of the reference split, split name used)."""
    import inspect

    from hydra.utils import get_class

    from ganrun.build import build_dataset

    # resolved where it stands: dataset keys may interpolate the model recipe
    node = OmegaConf.create(OmegaConf.to_container(dataset_cfg, resolve=True))
    cls = get_class(node._target_)
    has_split = "split" in inspect.signature(cls.__init__).parameters
    used = str(node.get("split", "train")) if has_split else "all"
    if split is not None and has_split:
        OmegaConf.update(node, "split", split, force_add=True)
        used = split
    return build_dataset(OmegaConf.create({"dataset": node})), used


def check_reference(dataset_cfg: DictConfig, settings: Settings) -> None:
    """The reference split exists (builds the data source; reads nothing)."""
    if set(settings.metrics) & set(IMAGE_METRICS):
        try:
            reference_source(dataset_cfg, settings.split)
        except ConfigError as e:
            raise ConfigError(f"split={settings.split}: {e}") from None


def check_features(settings: Settings, fetch: bool = False) -> None:
    """The extractor is there: a fitted evaluator's file, or a local Inception file given
    by eval.inception_weights / $GANRUN_INCEPTION_WEIGHTS (checked). With ``fetch``
    the standard Inception weights are also found in (or downloaded to) torch.hub's
    cache now, so a training run without them fails before its run dir exists; so are
    torch-fidelity's other downloaded weights (vgg16, clip-*)."""
    import os

    from ganrun.metrics import trusted, weights
    from ganrun.metrics.features import INCEPTION, resolve_features

    if not set(settings.metrics) & set(IMAGE_METRICS):
        return
    if trusted.known_file(settings.features) is not None:
        if fetch:
            resolve_features(settings.features, cache_dir=settings.cache_dir, download=True)
    elif settings.features != INCEPTION:
        resolve_features(settings.features, cache_dir=settings.cache_dir, download=False)
    elif settings.inception_weights or os.environ.get(weights.ENV_VAR) or fetch:
        weights.resolve_inception(settings.inception_weights, download=fetch)


def check_modes(settings: Settings, data, need_files: bool = True) -> None:
    """``modes`` needs a dataset with known modes, and on images a fitted classifier."""
    if "modes" not in settings.metrics:
        return
    if not modes.supports(data):
        raise ConfigError(
            "metric modes needs a dataset with known modes (ring, grid, stacked_mnist); "
            f"this one is {data.describe()}"
        )
    if data.kind == "image" and need_files:
        from ganrun.metrics.features import evaluator_path

        name = settings.classifier
        path = Path(name) if name.endswith(".pt") else evaluator_path(name, settings.cache_dir)
        if not path.expanduser().is_file():
            raise ConfigError(
                f"classifier={name} is not fitted (no {path}): run "
                f"`ganrun fit-evaluator dataset=mnist_embedded name={Path(name).stem}`"
            )


class Evaluation:
    """Prepared once (extractor, reference data), run for any number of generators."""

    def __init__(
        self,
        settings: Settings,
        train_cfg: DictConfig,
        *,
        dataset_name: str | None,
        device: torch.device,
        required: bool = True,
        data=None,
    ):
        """``data``: the run's DataSource when the caller has built it already (the
        training hook); otherwise it is built from ``train_cfg``."""
        from ganrun.build import build_dataset

        self.s, self.device = settings, device
        self.data = data if data is not None else build_dataset(train_cfg)
        settings.check(self.data.kind)
        check_modes(settings, self.data, need_files=False)
        self.metrics = list(settings.metrics)
        self.image_metrics = {m for m in self.metrics if m in IMAGE_METRICS}
        self.skipped: dict[str, str] = {}
        self.features = None
        if self.image_metrics:
            from ganrun.metrics.features import resolve_features

            try:
                self.features = resolve_features(
                    settings.features,
                    inception_weights=settings.inception_weights,
                    cache_dir=settings.cache_dir,
                )
            except GanrunError as e:
                if required:
                    raise
                log.warning("evaluation goes on without %s: %s", ", ".join(self.image_metrics), e)
                self.skipped.update({m: str(e) for m in self.image_metrics})
                self.image_metrics = set()
        if self.image_metrics:  # the real side is stamped even for IS alone
            from ganrun.metrics import fidelity

            source, split = reference_source(train_cfg.dataset, settings.split)
            ds_cfg = OmegaConf.to_container(train_cfg.dataset, resolve=True)
            self.ref = fidelity.reference_of(ds_cfg, dataset_name, split, self.data.data_shape)
            self.real = fidelity.RealImages(
                source, settings.n_real, settings.seed, self.features.rgb
            )
        else:
            self.ref, self.real = None, None
        self.classifier = None
        if "modes" in self.metrics and self.data.kind == "image":
            try:
                self.classifier = self._load_classifier()
            except GanrunError as e:
                if required:
                    raise
                log.warning("evaluation goes on without modes: %s", e)
                self.skipped["modes"] = str(e)

    def _load_classifier(self):
        from ganrun.metrics import classifier as clf
        from ganrun.metrics.features import evaluator_path

        name = self.s.classifier
        path = name if name.endswith(".pt") else evaluator_path(name, self.s.cache_dir)
        try:
            model = clf.load_classifier(path, self.device)
        except clf.EvaluatorError:
            raise ConfigError(
                f"classifier={name} is not fitted (no {path}): run `ganrun fit-evaluator name={name}`"
            ) from None
        self.classifier_sha = clf.file_sha256(path)
        return model

    @property
    def active(self) -> list[str]:
        return [m for m in self.metrics if m not in self.skipped]

    def run(
        self, G: torch.nn.Module, truncation: float | None = None, sampler=None
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Scores and protocol of G's samples; ``sampler`` (a
        ganrun.rejection.RejectionSampler of G) draws them instead of G alone, and its
        ``describe()`` joins the protocol as ``sampler``."""
        scores: dict[str, float] = {}
        protocol: dict[str, Any] = {}
        draw = (
            generate if sampler is None else (lambda _G, n, device, **kw: sampler.generate(n, **kw))
        )
        if sampler is not None:
            protocol["sampler"] = sampler.describe()
        if self.image_metrics:
            from ganrun.metrics import fidelity

            x = draw(
                G,
                self.s.n,
                device=self.device,
                seed=self.s.seed,
                batch_size=self.s.batch_size,
                truncation=truncation,
            )
            if x.dim() != 4:
                raise ConfigError("fid/is/kid/prc need a generator of images")
            try:
                got, proto = fidelity.fidelity_metrics(
                    fidelity.to_uint8(x),
                    self.real,
                    self.image_metrics,
                    self.features,
                    ref=self.ref,
                    cache_dir=self.s.cache_dir,
                    device=self.device,
                    batch_size=self.s.batch_size,
                    seed=self.s.seed,
                )
            except ValueError as e:  # torch-fidelity's vassert
                raise fidelity.describe_error(e) from None
            scores.update(got)
            protocol["fidelity"] = proto
        if "modes" in self.active:
            got, proto = self._modes(G, truncation, draw)
            scores.update(got)
            protocol["modes"] = proto
        return scores, protocol

    def _modes(self, G, truncation, draw=generate):
        image = self.data.kind == "image"
        n = self.s.n_modes or (MODES_N_IMAGES if image else MODES_N_POINTS)
        x = draw(
            G,
            n,
            device=self.device,
            seed=self.s.seed,
            batch_size=max(self.s.batch_size, 256),
            truncation=truncation,
        )
        # images stay on the CPU; the mode counter moves batches to the classifier
        got = modes.mode_metrics(x, self.data, self.classifier if image else None)
        label = _features_label(self.s.classifier) if image else None
        scores = {(f"{k}[{label}]" if label else k): float(v) for k, v in got.items()}
        proto = {
            "n_generated": n,
            "reference": self.data.describe(),
            "classifier": label,
            "classifier_sha256": getattr(self, "classifier_sha", None) if image else None,
        }
        return scores, proto

"""Feature extractors for torch-fidelity: which network turns images into features.

``resolve_features(name)`` gives a ``Features`` record for:

* ``inception-v3-compat``: torch-fidelity's InceptionV3 (the TensorFlow FID network),
  its weights resolved and SHA-256-checked by ``ganrun.metrics.weights``;
* a fitted ganrun classifier (``ganrun fit-evaluator``), by name (the file
  ``<cache>/evaluators/<name>.pt``) or by ``.pt`` path: registered here with
  torch-fidelity's ``register_feature_extractor`` under the file's stem, its
  hidden layer standing in for Inception's pool features (FID/KID/prc) and its
  logits for ``logits_unbiased`` (IS);
* torch-fidelity's ``vgg16`` and ``clip-*``: their weights are found in (or
  downloaded to) torch.hub's cache by ``ganrun.metrics.trusted`` and checked when an
  evaluation hands them to torch-fidelity (``Features.stage``). Other torch-fidelity
  extractors (``dinov2-*``: torch.hub imports a repo's code) are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ganrun.errors import ConfigError
from ganrun.metrics import classifier as clf
from ganrun.metrics import trusted, weights

INCEPTION = "inception-v3-compat"
ENV_CACHE = "GANRUN_CACHE"


def cache_root(cache_dir: str | None = None) -> Path:
    """ganrun's cache: ``cache_dir``, else $GANRUN_CACHE, else ~/.cache/ganrun."""
    return Path(cache_dir or os.environ.get(ENV_CACHE) or "~/.cache/ganrun").expanduser()


def evaluator_path(name: str, cache_dir: str | None = None) -> Path:
    return cache_root(cache_dir) / "evaluators" / f"{name}.pt"


def _classifier_class():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class ClassifierFeatureExtractor(FeatureExtractorBase):
        """A fitted ganrun classifier as a torch-fidelity extractor: ``penultimate``
        (FID/KID/prc) and its logits as ``logits_unbiased`` (IS), from uint8 images."""

        FEATURES = ("penultimate", "logits_unbiased", "logits")
        GANRUN_FITTED = True  # registered by ganrun under a fitted evaluator's name

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            if feature_extractor_weights_path is None:
                raise ConfigError(f"features={name}: no fitted classifier file given")
            self.net = clf.load_classifier(feature_extractor_weights_path)
            self.side = self.net.arch["resolution"]
            self.channels = self.net.arch["in_channels"]

        @staticmethod
        def get_provided_features_list():
            return ClassifierFeatureExtractor.FEATURES

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"isc": "logits_unbiased", "fid": "penultimate", "kid": "penultimate"}.get(
                metric, "penultimate"
            )

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 1, 28, 28, dtype=torch.uint8)

        def forward(self, x):
            x = prepare_for_classifier(x, self.channels, self.side)
            h, logits = self.net.features_and_logits(x)
            out = {"penultimate": h, "logits_unbiased": logits, "logits": logits}
            return tuple(out[f] for f in self.features_list)

    return ClassifierFeatureExtractor


def prepare_for_classifier(x: torch.Tensor, channels: int, side: int) -> torch.Tensor:
    """uint8 (B, C, H, W) -> floats in [-1, 1] with the classifier's channels and side."""
    x = x.float() / 127.5 - 1
    if x.shape[1] != channels:
        if channels == 1:  # ITU-R 601 luma, as the data pipeline converts RGB to grey
            w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
        else:
            x = x.expand(-1, channels, -1, -1)
    if x.shape[-1] != side or x.shape[-2] != side:
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    return x


@dataclass
class Features:
    """A resolved feature extractor."""

    name: str  # torch-fidelity registry name (also shown in score names)
    weights_path: str | None  # handed to torch-fidelity (None: its own download)
    weights_sha256: str  # or a note that the weights are not verified
    rgb: bool  # torch-fidelity's image extractors want 3 channels
    resize: str  # what happens to an image before the network (for the stamp)
    side: int | None = None  # fitted classifiers: their input side
    # how an evaluation hands weights_path to torch-fidelity (ganrun.metrics.trusted):
    # "copy" (hashed against weights_sha256 while copied), "state_dict" (reloaded
    # weights-only), "as-is" (ganrun's own extractor, which reads it weights-only)
    stage: str = "as-is"


def resolve_features(
    name: str,
    *,
    inception_weights: str | None = None,
    cache_dir: str | None = None,
    download: bool = True,
) -> Features:
    """``name``: inception-v3-compat, a fitted evaluator (name or .pt path) or another
    torch-fidelity extractor. Raises a one-line GanrunError when unavailable."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if name == INCEPTION:
        path = weights.resolve_inception(inception_weights, download=download)
        return Features(
            INCEPTION,
            str(path),
            weights.INCEPTION_SHA256,
            True,
            "torch-fidelity: bilinear to 299x299 (TF1-compatible)",
            stage="copy",
        )
    path = Path(name).expanduser() if name.endswith(".pt") else evaluator_path(name, cache_dir)
    if path.is_file() or name.endswith(".pt"):
        obj = clf.read_classifier_file(path)
        reg_name = path.stem  # a fitted evaluator is named after its file: <name>.pt
        cls = FEATURE_EXTRACTORS_REGISTRY.get(reg_name)
        if cls is None:
            register_feature_extractor(reg_name, _classifier_class())
        elif not getattr(cls, "GANRUN_FITTED", False):
            raise ConfigError(f"features={name}: {reg_name} is a torch-fidelity extractor name")
        side = int(obj["arch"]["resolution"])
        return Features(
            reg_name,
            str(path),
            clf.file_sha256(path),
            False,
            f"to {obj['arch']['in_channels']}ch {side}x{side} (bilinear if the sizes differ)",
            side,
        )
    builtin = FEATURE_EXTRACTORS_REGISTRY.get(name)
    if builtin is not None and not getattr(builtin, "GANRUN_FITTED", False):
        known = trusted.known_file(name)
        if known is None:
            raise ConfigError(
                f"features={name}: ganrun cannot check what torch-fidelity loads for it "
                "(torch.hub imports code from $TORCH_HOME/hub); use "
                f"{INCEPTION}, vgg16, clip-* or a fitted evaluator"
            )
        path = trusted.resolve(known, download=download)
        return Features(name, str(path), known.sha256, True, "torch-fidelity", stage=known.stage)
    raise ConfigError(
        f"features={name} is not fitted (no {path}): run `ganrun fit-evaluator name={name}`"
        f" (e.g. dataset=mnist_embedded), or use {INCEPTION}"
    )

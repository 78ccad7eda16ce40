"""IS, FID, KID and precision/recall through torch-fidelity's ``calculate_metrics``.

ganrun hands torch-fidelity two ``Dataset``s of uint8 images (generated, then the
reference split of the training dataset) and the feature extractor by name, and
reports exactly what torch-fidelity returns. What ganrun adds:

* feature extractors (``ganrun.metrics.features``): InceptionV3 with checked
  weights, or a fitted offline classifier registered with torch-fidelity;
* a protocol stamp on every score (``fidelity_protocol``);
* a real-features cache under a name that encodes the dataset, split, extractor,
  weights hash and the protocol, so a second evaluation reads the reference
  features from disk and never touches the real images;
* safe loading (``ganrun.metrics.trusted``): torch-fidelity unpickles what it
  loads (``weights_only=False``), so it only ever sees a private folder holding
  files ganrun has just checked: weights hashed or reloaded weights-only, cached
  features read weights-only. Its ``cache_root`` is that folder, never the cache.

Metrics and their sources: IS (Salimans et al. 2016, 10 splits), FID (Heusel
et al. 2017), KID (Binkowski et al. 2018; cubic polynomial kernel, 100 subsets of
min(1000, n, n_real) samples), precision/recall (Kynkaenniemi et al. 2019, k=3).
Deviation: Kynkaenniemi et al. compute precision/recall on VGG-16 features; here
one evaluation uses one extractor for every metric (Inception pool features by
default), so prc can run with the same verified weights or offline. Use
``features=vgg16`` for the paper's features (torch-fidelity downloads them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ganrun.data.base import ArraySource, DataSource, StreamSource
from ganrun.errors import ConfigError, GanrunError
from ganrun.metrics import trusted
from ganrun.metrics.features import Features, cache_root

log = logging.getLogger(__name__)

# torch-fidelity result keys -> ganrun score names
KEYS = {
    "inception_score_mean": "is",
    "inception_score_std": "is_std",
    "frechet_inception_distance": "fid",
    "kernel_inception_distance_mean": "kid",
    "kernel_inception_distance_std": "kid_std",
    "precision": "precision",
    "recall": "recall",
    "f_score": "f_score",
}
ISC_SPLITS = 10  # the 10 splits of Salimans et al. 2016's released code
# KID (Binkowski et al. 2018): 100 subsets of up to 1,000 samples, torch-fidelity's defaults
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
PRC_NEIGHBORHOOD = 3  # k = 3 nearest neighbours, as Kynkaanniemi et al. 2019 recommend


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8; the exact inverse of the data pipeline's x / 127.5 - 1."""
    return ((x.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- inputs
class ImageTensors(Dataset):
    """uint8 images (N, C, H, W), made 3-channel for torch-fidelity's RGB networks."""

    def __init__(self, images: torch.Tensor, rgb: bool):
        self.images, self.rgb = images, rgb

    def __len__(self):
        return int(self.images.shape[0])

    def __getitem__(self, i):
        x = self.images[i]
        return x.expand(3, -1, -1) if self.rgb and x.shape[0] == 1 else x


class RealImages(Dataset):
    """The reference images as uint8, read only when torch-fidelity asks for them
    (on a cache hit it never does). ``n`` picks a fixed random subset."""

    def __init__(self, source: DataSource, n: int | None, seed: int, rgb: bool):
        self.source, self.n, self.seed, self.rgb = source, n, seed, rgb
        self._x: torch.Tensor | None = None
        self._ds = None
        self._idx: torch.Tensor | None = None

    def _open(self):
        if self._idx is not None:
            return
        src = self.source
        if isinstance(src, ArraySource):
            self._x = src.arrays()[0]
            total = int(self._x.shape[0])
        elif isinstance(src, StreamSource):
            self._ds = src.dataset()
            total = len(self._ds)
        else:
            raise ConfigError(f"{src.describe()} has no fixed set of images to compare against")
        if self.n is None or self.n >= total:
            self._idx = torch.arange(total)
        else:
            g = torch.Generator().manual_seed(self.seed)
            self._idx = torch.randperm(total, generator=g)[: self.n]

    def __len__(self):
        self._open()
        return int(self._idx.shape[0])

    def __getitem__(self, i):
        self._open()
        j = int(self._idx[i])
        x = self._x[j] if self._x is not None else to_uint8(self._ds[j][0])
        return x.expand(3, -1, -1) if self.rgb and x.shape[0] == 1 else x


# --------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class Reference:
    """The real side of a comparison."""

    name: str  # dataset config name (e.g. mnist_embedded) or class name
    split: str
    resolution: int
    channels: int
    digest: str  # hash of the dataset config, less machine-specific keys (root)


def reference_of(
    dataset_cfg: dict[str, Any], name: str | None, split: str, data_shape: tuple[int, ...]
) -> Reference:
    """``data_shape``: (C, H, W) of the images as the model sees them."""
    node = {k: v for k, v in dataset_cfg.items() if k not in ("root", "download")}
    node["split"] = split
    digest = hashlib.sha256(json.dumps(node, sort_keys=True, default=str).encode()).hexdigest()
    return Reference(
        name or str(dataset_cfg.get("_target_", "?")).rsplit(".", 1)[-1],
        split,
        int(data_shape[-1]),
        int(data_shape[0]),
        digest[:12],
    )


def fidelity_protocol(
    feats: Features,
    ref: Reference | None,
    n_fake: int,
    n_real: int | None,
    kid_subset: int | None,
    isc_splits: int = ISC_SPLITS,
    kid_subsets: int = KID_SUBSETS,
) -> dict[str, Any]:
    import torch_fidelity

    return {
        "n_generated": int(n_fake),
        "n_real": n_real,
        "reference": asdict(ref) if ref is not None else None,
        "features": feats.name,
        "weights_sha256": feats.weights_sha256,
        "resize": feats.resize,
        "torch_fidelity": str(torch_fidelity.__version__),
        "isc_splits": isc_splits,
        "kid_subsets": kid_subsets if kid_subset else None,  # as KID would use them
        "kid_subset_size": kid_subset,
        "prc_neighborhood": PRC_NEIGHBORHOOD,
    }


def _cache_name(feats: Features, ref: Reference, n_real: int | None, seed: int) -> str:
    import torch_fidelity

    key = {
        "ref": asdict(ref),
        "features": feats.name,
        "weights": feats.weights_sha256,
        "resize": feats.resize,
        "rgb": feats.rgb,
        "n_real": n_real,
        "subset_seed": seed if n_real is not None else None,
        "torch_fidelity": str(torch_fidelity.__version__),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return f"ganrun-{ref.name}-{ref.split}-{digest}"  # torch-fidelity appends the extractor


# --------------------------------------------------------------------------- computing
def fidelity_metrics(
    fake: torch.Tensor,
    real: RealImages | None,
    metrics: set[str],
    feats: Features,
    *,
    ref: Reference | None = None,
    cache_dir: str | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    seed: int = 0,
    isc_splits: int = ISC_SPLITS,
    kid_subsets: int = KID_SUBSETS,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Scores named ``<metric>[<features>]`` and their protocol, for uint8 images
    ``fake`` against ``real`` (None is fine when only ``is`` is asked for)."""
    import torch_fidelity

    unknown = metrics - {"fid", "is", "kid", "prc"}
    if unknown or not metrics:
        raise ConfigError(f"unknown image metric(s) {sorted(unknown)}; use fid, is, kid, prc")
    binary = bool(metrics & {"fid", "kid", "prc"})
    if binary and real is None:
        raise ConfigError("fid, kid and prc need reference images")
    device = torch.device(device)
    cache = cache_root(cache_dir) / "fidelity"
    n_fake = int(fake.shape[0])
    kwargs: dict[str, Any] = dict(
        input1=ImageTensors(fake, feats.rgb),
        isc="is" in metrics,
        fid="fid" in metrics,
        kid="kid" in metrics,
        prc="prc" in metrics,
        feature_extractor=feats.name,
        cuda=device.type == "cuda",
        batch_size=batch_size,
        isc_splits=isc_splits,
        kid_subsets=kid_subsets,
        prc_neighborhood=PRC_NEIGHBORHOOD,
        rng_seed=seed,
        save_cpu_ram=True,  # no DataLoader worker processes for in-memory images
        verbose=False,
    )
    # The real side is stamped whenever it is known, even for IS alone, so scores
    # of the same protocol share a table whichever metrics were asked for.
    n_real, kid_subset, meta_path = None, None, None
    if real is not None:
        if ref is not None:
            name = _cache_name(feats, ref, real.n, real.seed)
            meta_path = cache / f"{name}.json"
            n_real = _cached_count(meta_path)
        if n_real is None:
            n_real = len(real)  # reads the real images (a cache miss reads them anyway)
            if meta_path is not None:
                _write_count(meta_path, n_real)
        kid_subset = min(KID_SUBSET_SIZE, n_fake, n_real)
    cached = binary and meta_path is not None
    if binary:
        kwargs.update(input2=real, kid_subset_size=kid_subset)
    if "is" in metrics and n_fake < isc_splits:
        raise ConfigError(f"is needs at least {isc_splits} generated samples, got {n_fake}")
    ctx = torch.cuda.device(device) if device.type == "cuda" else _nullcontext()
    with trusted.private_dir(cache) as private:
        # torch-fidelity reads only files ganrun has just checked (ganrun.metrics.trusted)
        kwargs["feature_extractor_weights_path"] = trusted.stage_weights(
            feats.weights_path, feats.weights_sha256, feats.stage, private
        )
        if cached:
            # torch-fidelity names a feature file <input2_cache_name>-<extractor>-features-<layer>
            prefix = f"{meta_path.stem}-{feats.name}-features-"
            staged = trusted.stage_features(cache, prefix, private, n_real)
            kwargs.update(cache_root=str(private), input2_cache_name=meta_path.stem)
        else:
            kwargs.update(cache=False)
        with ctx:
            raw = torch_fidelity.calculate_metrics(**kwargs)
        if cached:
            trusted.keep_features(private, prefix, cache, staged)
    scores = {f"{KEYS[k]}[{feats.name}]": float(v) for k, v in raw.items() if k in KEYS}
    ref = ref if real is not None else None
    return scores, fidelity_protocol(
        feats, ref, n_fake, n_real, kid_subset, isc_splits, kid_subsets
    )


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _cached_count(meta: Path) -> int | None:
    try:
        return int(json.loads(meta.read_text())["n_real"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_count(meta: Path, n_real: int) -> None:
    try:
        meta.parent.mkdir(parents=True, exist_ok=True)
        tmp = meta.with_name(f".{meta.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"n_real": n_real}))
        os.replace(tmp, meta)
    except OSError as e:  # a read-only cache only costs recomputation
        log.warning("could not write %s: %s", meta, e)


def describe_error(e: BaseException) -> GanrunError:
    """torch-fidelity's assertion failures (ValueError) as one line."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return GanrunError(f"torch-fidelity: {first}")

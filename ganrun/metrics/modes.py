"""Mode coverage: how many of a dataset's known modes a generator reaches.

The protocol of VEEGAN (Srivastava et al. 2017, Sec. 5) as run by PacGAN
(Lin et al. 2018, Sec. 5), checked against PacGAN's official code
(github.com/fjxmlzn/PacGAN: synthetic_data_experiments/PacGAN/pacgan/extensions.py,
MetricLogger; stacked_MNIST_experiments/VEEGAN_experiment/model.py, log_metrics).

2-D mixtures (``dataset=ring``: 8 modes, ``dataset=grid``: 25), from 2,500 samples:
  - each sample is assigned to its nearest centre, distance measured in standard
    deviations of the components (||x - mu|| / sigma, all components isotropic
    with the same sigma); it is *high quality* when that distance is below 3;
  - ``modes``: modes with at least one high-quality sample (a mode is "lost"
    when no sample lies within 3 sigma of its centre);
  - ``high_quality``: the share of samples that are high quality, in [0, 1];
  - ``reverse_kl``: the reverse KL, KL(p_gen || uniform) = sum_k p_k log(K p_k), of
    the histogram p of high-quality samples over the K modes against the uniform
    mode distribution of the data. Empty bins add 0 (0 log 0 = 0), so the value
    is finite and at most log K (all samples in one mode). With no high-quality
    sample at all the histogram is undefined and ``reverse_kl`` is +inf.
    (PacGAN's tables call this column "reverse KL"; its released 2-D code logs
    the Jensen-Shannon divergence of the same histogram instead.)

Stacked MNIST (``dataset=stacked_mnist``: 1,000 modes), from 26,000 samples:
  - each of the three channels is classified by a pre-trained MNIST classifier
    (argmax of its logits); the mode is the digit triple (100a + 10b + c);
  - ``modes``: distinct triples among the samples (out of 1,000);
  - ``kl``: KL(p_gen || uniform) over the 1,000 triples, as PacGAN's
    ``log_metrics`` and Metz et al. 2017 (Table 2, "KL(model || data)") compute
    it: every sample counts (a classifier always answers), empty bins add 0.

KLs are in nats. The score names are those of ``ganrun.metrics.evaluate``
(``eval=modes``); ``n_modes(data)`` gives the denominator of ``modes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.data.base import DataSource
from ganrun.data.stacked import N_MODES, StackedMNIST, mode_index
from ganrun.data.toy import Mixture
from ganrun.errors import ConfigError
from ganrun.metrics.sampling import generate

# VEEGAN / PacGAN: 2,500 generated points for the 2-D mixtures, 26,000 images
# for stacked MNIST; "high quality" = within 3 standard deviations of a centre.
POINT_SAMPLES = 2500
STACKED_SAMPLES = 26000
HIGH_QUALITY_STDS = 3.0
CLASSIFIER_SIDE = 28  # the MNIST evaluator reads 28x28 digits

Classifier = Callable[[torch.Tensor], torch.Tensor]


def supports(data: DataSource) -> bool:
    """Whether the dataset has countable modes (the 2-D mixtures, stacked MNIST)."""
    return isinstance(data, (Mixture, StackedMNIST))


def n_modes(data: DataSource) -> int:
    """How many modes the dataset has (8 ring, 25 grid, 1,000 stacked MNIST)."""
    return N_MODES if isinstance(data, StackedMNIST) else int(data.n_modes)


def protocol_samples(data: DataSource) -> int:
    """How many generated samples the published protocol evaluates for this dataset."""
    return STACKED_SAMPLES if isinstance(data, StackedMNIST) else POINT_SAMPLES


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(p || uniform) in nats for the histogram ``counts`` over K bins; empty
    bins contribute 0. +inf for an empty histogram (no distribution to compare)."""
    counts = counts.double()
    total = float(counts.sum())
    if total <= 0:
        return math.inf
    p = counts[counts > 0] / total
    return float((p * torch.log(p * counts.numel())).sum().clamp_min(0.0))


def mixture_histogram(
    points: torch.Tensor, centers: torch.Tensor, std: float, threshold: float = HIGH_QUALITY_STDS
) -> tuple[torch.Tensor, int]:
    """(high-quality samples per mode (K,), number of samples): each point goes to
    its nearest centre and counts when it lies within ``threshold`` std of it."""
    if points.dim() != 2 or points.shape[1] != centers.shape[1]:
        raise ConfigError(
            f"the modes metric expected points of shape (N, {centers.shape[1]}), "
            f"got {tuple(points.shape)}"
        )
    points = points.detach().double().cpu()
    dist = torch.cdist(points, centers.double()) / std  # in standard deviations
    nearest, mode = dist.min(dim=1)
    good = nearest < threshold
    return torch.bincount(mode[good], minlength=centers.shape[0]), int(points.shape[0])


def mixture_metrics(
    points: torch.Tensor, centers: torch.Tensor, std: float, threshold: float = HIGH_QUALITY_STDS
) -> dict[str, float]:
    counts, n = mixture_histogram(points, centers, std, threshold)
    return {
        "modes": float((counts > 0).sum()),
        "high_quality": float(counts.sum()) / max(n, 1),
        "reverse_kl": kl_to_uniform(counts),
    }


@torch.no_grad()
def classify_channels(
    images: torch.Tensor, classifier: Classifier, batch_size: int = 1000
) -> torch.Tensor:
    """(N, 3, H, W) images in [-1, 1] -> (N, 3) digits, one per channel."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ConfigError(
            f"the stacked-MNIST modes metric expected images of shape (N, 3, H, W), "
            f"got {tuple(images.shape)}"
        )
    device = _device_of(classifier, images.device)
    if isinstance(classifier, nn.Module):
        classifier.eval()
    out = []
    for chunk in images.split(batch_size):
        n, c, h, w = chunk.shape
        x = chunk.to(device).float().reshape(n * c, 1, h, w)
        if (h, w) != (CLASSIFIER_SIDE, CLASSIFIER_SIDE):
            x = F.interpolate(
                x, size=(CLASSIFIER_SIDE,) * 2, mode="bilinear", antialias=True, align_corners=False
            )
        logits = classifier(x)
        if logits.shape != (n * c, 10):
            raise ConfigError(
                f"the MNIST classifier returned shape {tuple(logits.shape)}; expected ({n * c}, 10)"
            )
        out.append(logits.argmax(dim=1).reshape(n, c).cpu())
    return torch.cat(out)


def stacked_metrics(
    images: torch.Tensor, classifier: Classifier, batch_size: int = 1000
) -> dict[str, float]:
    modes = mode_index(classify_channels(images, classifier, batch_size))
    counts = torch.bincount(modes, minlength=N_MODES)
    return {"modes": float((counts > 0).sum()), "kl": kl_to_uniform(counts)}


def mode_metrics(
    samples: torch.Tensor, data: DataSource, classifier: nn.Module | Classifier | None = None
) -> dict[str, float]:
    """Mode-coverage numbers of generated ``samples`` for ``data`` (see the module doc).

    ``classifier`` maps (B, 1, 28, 28) digits in [-1, 1] to (B, 10) logits; only
    stacked MNIST needs it.
    """
    if isinstance(data, Mixture):
        return mixture_metrics(samples, data.centers, data.std)
    if isinstance(data, StackedMNIST):
        if classifier is None:
            raise ConfigError(
                "the modes metric on stacked_mnist needs the MNIST classifier; "
                "train it once with `ganrun fit-evaluator dataset=mnist_embedded`"
            )
        return stacked_metrics(samples, classifier)
    raise ConfigError(
        f"the modes metric needs a dataset with known modes (ring, grid or stacked_mnist); "
        f"this one is {data.describe()}"
    )


def evaluate_generator(
    G: nn.Module,
    data: DataSource,
    classifier: nn.Module | Classifier | None = None,
    n: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Generate the protocol's number of samples (or ``n``) from a fixed seeded z and
    count modes. Points are drawn in one batch (2,500 are small), images in 500s."""
    n = protocol_samples(data) if n is None else int(n)
    if n < 1:
        raise ConfigError(f"the modes metric needs n >= 1 samples, got {n}")
    batch = 500 if data.kind == "image" else n
    x = generate(G, n, device=torch.device(device), seed=int(seed), batch_size=batch)
    return mode_metrics(x, data, classifier)


def _device_of(module, default: torch.device) -> torch.device:
    if isinstance(module, nn.Module):
        for p in module.parameters():
            return p.device
    return default

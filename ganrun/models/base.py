"""Shared pieces of the model contract (see ganrun/models/__init__.py)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models.vbn import VirtualBatchNorm

Z_DISTRIBUTIONS = ("normal", "uniform")


def _draw(kind: str, shape: tuple[int, ...], generator, device) -> torch.Tensor:
    """Standard normal or U[0, 1) numbers; from ``generator`` (on its own device,
    so a seeded draw is the same whatever the training device) or the global RNG."""
    fn = torch.randn if kind == "normal" else torch.rand
    if generator is not None:
        return fn(*shape, generator=generator, device=generator.device).to(device)
    return fn(*shape, device=device)


def sample_latent(
    n: int,
    dim: int,
    dist: str,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    truncation: float | None = None,
) -> torch.Tensor:
    """Draw ``n`` latent vectors of size ``dim``.

    ``normal``: N(0, I). ``uniform``: U(-1, 1) (Radford et al. 2015, Sec. 4).
    With ``truncation=t`` (normal only), entries with ``|z| > t`` are resampled
    until none remains: the truncation trick of Brock et al. 2018, Sec. 3.1.
    """
    if dist == "normal":
        z = _draw("normal", (n, dim), generator, device)
        if truncation is not None:
            z = truncate_normal(z, truncation, generator=generator)
        return z
    if dist == "uniform":
        if truncation is not None:
            raise ConfigError(
                "truncation needs a normal latent prior; this model draws z ~ U(-1, 1)"
            )
        return _draw("uniform", (n, dim), generator, device) * 2 - 1
    raise ConfigError(
        f"z_dist={dist!r} is not a latent distribution; choose from {', '.join(Z_DISTRIBUTIONS)}"
    )


def truncation_args(G, truncation: float | None) -> tuple[float | None, dict]:
    """``G.truncation_args(truncation)``; a generator that only follows the basic
    contract (``sample_z`` and ``forward``, no base class) truncates in z."""
    method = getattr(G, "truncation_args", None)
    return method(truncation) if method is not None else (truncation, {})


def truncate_normal(
    z: torch.Tensor, threshold: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Resample the entries of a standard-normal ``z`` whose magnitude exceeds ``threshold``."""
    if not threshold > 0:
        raise ConfigError(f"truncation must be a threshold > 0, got {threshold}")
    z = z.clone()
    mask = z.abs() > threshold
    while bool(mask.any()):
        z[mask] = _draw("normal", (int(mask.sum()),), generator, z.device).to(z.dtype)
        mask = z.abs() > threshold
    return z


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose from {', '.join(choices)}")


class Capabilities:
    """What data an architecture can serve; checked before anything is built."""

    # Image sides the architecture can produce; None = any (e.g. MLPs).
    RESOLUTIONS: tuple[int, ...] | None = None
    # Whether the data must be images (C, H, W) rather than points (D,).
    IMAGES_ONLY = False
    # Whether the dataset must have class labels (conditional models).
    REQUIRES_LABELS = False

    @classmethod
    def check_data(cls, data_shape: tuple[int, ...], num_classes: int) -> str | None:
        """Why this architecture cannot serve this data, or None if it can."""
        name = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
        if cls.IMAGES_ONLY and len(data_shape) != 3:
            return f"{name} needs image data (C, H, W); this dataset gives points of shape {tuple(data_shape)}"
        if cls.RESOLUTIONS is not None and len(data_shape) == 3:
            _, h, w = data_shape
            if h != w or h not in cls.RESOLUTIONS:
                sizes = ", ".join(str(r) for r in cls.RESOLUTIONS)
                return f"{name} supports dataset.resolution in {{{sizes}}}, not {h}x{w}"
        if cls.REQUIRES_LABELS and num_classes < 1:
            return (
                f"{name} is class-conditional and needs a labelled dataset (this one has no labels)"
            )
        return None


class Generator(Capabilities, nn.Module):
    """Base class: holds the latent prior and the output shape.

    Truncation (sampling closer to the prior's centre) happens in one of two places,
    named by ``TRUNCATION_SPACE``:

    * ``"z"`` (default): ``G.sample_z(n, truncation=t)`` resamples every |z| > t
      (BigGAN's truncation trick); ``G(z, c)`` is called as usual.
    * ``"w"`` (style-based generators, e.g. StyleGAN): draw z with
      ``G.sample_z(n)`` (which refuses ``truncation``) and call
      ``G(z, c, truncation=psi)``: the generator moves its intermediate latent
      w towards its tracked mean, w' = w_avg + psi (w - w_avg).
    """

    TRUNCATION_SPACE = "z"

    def __init__(self, z_dim: int, data_shape: tuple[int, ...], z_dist: str = "normal"):
        super().__init__()
        if z_dim < 1:
            raise ConfigError(f"z_dim must be >= 1, got {z_dim}")
        check_choice("z_dist", z_dist, Z_DISTRIBUTIONS)
        self.z_dim = int(z_dim)
        self.z_dist = z_dist
        self.data_shape = tuple(int(s) for s in data_shape)
        self.num_classes = 0

    def sample_z(self, n, *, device="cpu", generator=None, truncation=None) -> torch.Tensor:
        return sample_latent(
            n, self.z_dim, self.z_dist, device=device, generator=generator, truncation=truncation
        )

    def truncation_args(self, truncation: float | None) -> tuple[float | None, dict]:
        """How this generator truncates, for every caller that draws samples (ganrun
        sample, the evaluation sampler, rejection sampling): (threshold for
        ``self.sample_z``, keyword arguments for ``self(z, c, ...)``), read from
        ``TRUNCATION_SPACE``. ``truncation=None`` gives (None, {})."""
        if truncation is not None and self.TRUNCATION_SPACE == "w":
            return None, {"truncation": float(truncation)}
        return truncation, {}

    def figure(self, name: str, settings, *, device="cpu", generator=None):
        """A figure that only some generators draw, asked for by ``ganrun sample
        <name>=true`` (StyleGAN: ``mixing``), as (images (N, C, H, W), images per
        row); ``settings`` is the sample config. None: this generator draws no such
        figure (the sample command then refuses with one line). The command names no
        model; a generator with a figure of its own overrides this."""
        return None


class Discriminator(Capabilities, nn.Module):
    """Base class: holds the input shape.

    Subclasses implement ``forward_features(x, c=None) -> (logits (B,), features (B, F))``,
    where ``features`` is the penultimate representation (what feature matching,
    Salimans et al. 2016, and InfoGAN's Q head read); ``forward`` returns the logits.
    """

    def __init__(self, data_shape: tuple[int, ...]):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        self.num_classes = 0

    def forward_features(
        self, x: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(x, c)[0]


def xavier_init(module: nn.Module) -> None:
    """Glorot & Bengio 2010 uniform conv/linear weights, zero biases: TF-slim's default
    initializers, so the init of reference codes written with slim (BEGAN's)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def dcgan_init(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) conv/linear weights, N(1, std) BatchNorm scales, zero biases
    (Radford et al. 2015, Sec. 4); virtual batch norm's scales as BatchNorm's."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, VirtualBatchNorm)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def log2_int(x: int) -> int:
    k = int(round(math.log2(x)))
    return k if 2**k == x else -1

"""GAN — Goodfellow et al. 2014 (arXiv:1406.2661), Sec. 5: multilayer perceptrons.

G: rectifier hidden layers, tanh output for images (the paper's sigmoid,
rescaled to [-1, 1]) and a linear output for points (the 2-D mixtures are not
bounded to [-1, 1]). D: maxout hidden layers (Goodfellow et al. 2013) with dropout, one
logit out. Sizes follow the paper's MNIST reference code (1200-unit G layers;
240 maxout units x 5 pieces in D) and scale with ``width`` (G's units; D gets
width/5 units of ``pieces`` pieces). Works on images (flattened) and on points.

Options for other papers' MLPs: ``batch_norm`` (BatchNorm before G's ReLUs) and
``init_std`` (N(0, std) weights instead of the reference code's uniform ranges)
give the 2-D networks of VEEGAN/PacGAN (conf/model/pacgan_mlp.yaml); D's
``pack`` is PacGAN's packing (ganrun/models/packing.py); D's ``unit_pixels`` maps
images to [0, 1] first, the pixel range of the reference code's MNIST.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base
from ganrun.models.minibatch import MinibatchHead, check_minibatch_features
from ganrun.models.packing import check_pack, pack_samples


class Maxout(nn.Module):
    """max over ``pieces`` affine maps (Goodfellow et al. 2013, Eq. 1)."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


def uniform_init(module: nn.Module, irange: float) -> None:
    """Goodfellow et al.'s pylearn2 init (also cgan's): every Linear's weights from
    U(-irange, irange), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -irange, irange)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _init(module: nn.Module, irange: float, std: float | None) -> None:
    """The reference code's uniform init, or N(0, std) weights when ``std`` is set
    (BatchNorm scales start at 1, as in the VEEGAN/PacGAN code)."""
    if std is None:
        uniform_init(module, irange)
        return
    if not std > 0:
        raise ConfigError(f"init_std must be > 0 (or null for the uniform init), got {std}")
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def unit_pixels_on(enabled: bool, data_shape) -> bool:
    """D's ``unit_pixels`` option (the reference code's MNIST pixels are in [0, 1],
    ganrun's in [-1, 1]): on for images only, as points are not pixels."""
    return bool(enabled) and len(data_shape) == 3


def to_unit_pixels(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) * 0.5


class Generator(base.Generator):
    def __init__(
        self,
        data_shape,
        z_dim: int = 100,
        width: int = 1200,
        depth: int = 2,
        z_dist: str = "normal",
        batch_norm: bool = False,
        init_std: float | None = None,
    ):
        super().__init__(z_dim, data_shape, z_dist)
        if width < 1 or depth < 1:
            raise ConfigError(
                f"vanilla G needs width >= 1 and depth >= 1, got width={width}, depth={depth}"
            )
        out = math.prod(self.data_shape)
        layers: list[nn.Module] = []
        d = z_dim
        for _ in range(depth):
            if batch_norm:  # BatchNorm's shift makes the layer's bias redundant
                layers += [nn.Linear(d, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(True)]
            else:
                layers += [nn.Linear(d, width), nn.ReLU(True)]
            d = width
        layers += [nn.Linear(d, out)]
        if len(self.data_shape) == 3:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        _init(self, 0.05, init_std)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.data_shape)


class Discriminator(base.Discriminator):
    def __init__(
        self,
        data_shape,
        width: int = 1200,
        depth: int = 2,
        pieces: int = 5,
        dropout_input: float = 0.2,
        dropout_hidden: float = 0.5,
        pack: int = 1,
        init_std: float | None = None,
        minibatch_features: int = 0,
        minibatch_mean: bool = False,
        unit_pixels: bool = False,
    ):
        super().__init__(data_shape)
        self.pack = check_pack(pack)
        self.unit_pixels = unit_pixels_on(unit_pixels, self.data_shape)
        # Salimans et al. 2016, Sec. 3.2: minibatch discrimination before the head
        minibatch = check_minibatch_features(minibatch_features, minibatch_mean)
        units = width // pieces if pieces > 0 else 0
        if units < 1 or depth < 1:
            raise ConfigError(
                f"vanilla D needs width/pieces >= 1 and depth >= 1, got width={width}, pieces={pieces}, depth={depth}"
            )
        for name, p in (("dropout_input", dropout_input), ("dropout_hidden", dropout_hidden)):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"model.D.{name} must be in [0, 1), got {p}")
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout_input)]
        d = math.prod(self.data_shape) * self.pack
        for _ in range(depth):
            layers += [Maxout(d, units, pieces), nn.Dropout(dropout_hidden)]
            d = units
        self.trunk = nn.Sequential(*layers)
        self.head = (
            MinibatchHead(d, minibatch, mean=minibatch_mean) if minibatch else nn.Linear(d, 1)
        )
        _init(self, 0.005, init_std)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        if self.unit_pixels:
            x = to_unit_pixels(x)
        h = self.trunk(pack_samples(x.flatten(1), self.pack))
        return self.head(h).view(h.shape[0]), h

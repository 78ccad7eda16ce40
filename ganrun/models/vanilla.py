"""GAN — Goodfellow et al. 2014 (arXiv:1406.2661), Sec. 5: multilayer perceptrons.

G: rectifier hidden layers, tanh output for images (the paper's sigmoid,
rescaled to [-1, 1]) and a linear output for points (the 2-D mixtures are not
bounded to [-1, 1]). D: maxout hidden layers (Goodfellow et al. 2013) with dropout, one
logit out. Sizes follow the paper's MNIST reference code (1200-unit G layers;
240 maxout units x 5 pieces in D) and scale with ``width`` (G's units; D gets
width/5 units of ``pieces`` pieces). Works on images (flattened) and on points.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base


class Maxout(nn.Module):
    """max over ``pieces`` affine maps (Goodfellow et al. 2013, Eq. 1)."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=2)


def _uniform_init(module: nn.Module, irange: float) -> None:
    # The reference code draws weights from U(-irange, irange), biases 0.
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -irange, irange)
            nn.init.zeros_(m.bias)


class Generator(base.Generator):
    def __init__(
        self,
        data_shape,
        z_dim: int = 100,
        width: int = 1200,
        depth: int = 2,
        z_dist: str = "normal",
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
            layers += [nn.Linear(d, width), nn.ReLU(True)]
            d = width
        layers += [nn.Linear(d, out)]
        if len(self.data_shape) == 3:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        _uniform_init(self, 0.05)

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
    ):
        super().__init__(data_shape)
        units = width // pieces if pieces > 0 else 0
        if units < 1 or depth < 1:
            raise ConfigError(
                f"vanilla D needs width/pieces >= 1 and depth >= 1, got width={width}, pieces={pieces}, depth={depth}"
            )
        for name, p in (("dropout_input", dropout_input), ("dropout_hidden", dropout_hidden)):
            if not 0.0 <= p < 1.0:
                raise ConfigError(f"model.D.{name} must be in [0, 1), got {p}")
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout_input)]
        d = math.prod(self.data_shape)
        for _ in range(depth):
            layers += [Maxout(d, units, pieces), nn.Dropout(dropout_hidden)]
            d = units
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(d, 1)
        _uniform_init(self, 0.005)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = self.trunk(x)
        return self.head(h).view(x.shape[0]), h

"""DRAGAN's MNIST networks — Kodali et al. 2017, "On Convergence and Stability of
GANs" (arXiv:1705.07215), as in the authors' released code
(github.com/kodalinaveen3/DRAGAN, ``DRAGAN.ipynb``, re-read for this module).

The code trains DRAGAN on MNIST with one-hidden-layer perceptrons:

* G: z (100-d, U(-1, 1)) -> FC 128, ReLU -> FC 784, sigmoid;
* D: x (784) -> FC 128, ReLU -> FC 1 (a logit);
* weights N(0, 1 / (fan_in / 2)) (its ``xavier_init``: std sqrt(2 / fan_in)),
  biases 0.

Here they take any data shape: images are flattened (28 px grey: the code's
784 inputs) and G's output is reshaped; 2-D points (``dataset=ring``) go in as
they are. ``width`` is the hidden layer of both (128 in the code).

Deviation: G's output for images is tanh, not sigmoid (ganrun's images are in
[-1, 1], the code's MNIST in [0, 1]); for points it is linear. The penalty
that makes this DRAGAN is ``ganrun.regularizers.DRAGANPenalty``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base


def _he_normal(module: nn.Module) -> None:
    """The code's ``xavier_init``: N(0, std = 1 / sqrt(fan_in / 2)) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.in_features / 2.0))
            nn.init.zeros_(m.bias)


def _check_width(width: int) -> int:
    if width < 1:
        raise ConfigError(f"model.width must be >= 1, got {width}")
    return int(width)


class Generator(base.Generator):
    def __init__(self, data_shape, z_dim: int = 100, width: int = 128, z_dist: str = "uniform"):
        super().__init__(z_dim, data_shape, z_dist)
        h = _check_width(width)
        out = math.prod(self.data_shape)
        image = len(self.data_shape) == 3
        self.net = nn.Sequential(
            nn.Linear(self.z_dim, h), nn.ReLU(True), nn.Linear(h, out),
            nn.Tanh() if image else nn.Identity(),
        )  # fmt: skip
        _he_normal(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.data_shape)


class Discriminator(base.Discriminator):
    def __init__(self, data_shape, width: int = 128):
        super().__init__(data_shape)
        h = _check_width(width)
        self.trunk = nn.Sequential(nn.Linear(math.prod(self.data_shape), h), nn.ReLU(True))
        self.head = nn.Linear(h, 1)
        _he_normal(self)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        f = self.trunk(x.flatten(1))
        return self.head(f).view(x.shape[0]), f

"""Conditional GAN — Mirza & Osindero 2014, "Conditional Generative Adversarial
Nets" (arXiv:1411.1784), Sec. 3.2 (Eq. 2) and Sec. 4.1 (MNIST).

The label y is fed to both networks as an extra input (one-hot), each input
first gets its own hidden layer and the two are concatenated (Sec. 4.1):

* G: z (100-d, uniform) -> 200 ReLU; y -> 1000 ReLU; joint 1200 ReLU; output
  (the paper's sigmoid units; here tanh, the same up to an affine rescaling,
  because ganrun's images live in [-1, 1]; linear for 2-D points).
* D: x -> maxout 240 units x 5 pieces; y -> maxout 50 x 5; joint maxout
  240 x 4; one logit (the paper's sigmoid output, applied inside the loss).
* Dropout 0.5 "applied to both the generator and discriminator": here on every
  hidden layer of both (the paper does not say which layers).

Works on flattened images of any size and on labelled points.

Deviations: z ~ U(-1, 1) instead of the paper's unit hypercube [0, 1]^100 (the
first layer's affine map absorbs the shift and scale); weights start from the
pylearn2 ranges of Goodfellow et al.'s MNIST code, U(-0.05, 0.05) in G and
U(-0.005, 0.005) in D, as the paper states no initialization. The recipe also
takes two settings from that code that the paper does not state: D's input
pixels in [0, 1] (``unit_pixels``; ganrun's images are in [-1, 1]) and 20 %
dropout on D's input; without them D never uses the label (docs/RESULTS.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base
from ganrun.models.minibatch import MinibatchHead, check_minibatch_features
from ganrun.models.vanilla import Maxout, to_unit_pixels, uniform_init, unit_pixels_on


def _check_classes(num_classes: int) -> None:
    if num_classes < 1:
        raise ConfigError(
            "cgan is class-conditional and needs a labelled dataset (this one has no labels)"
        )


def _check_dropout(p: float, name: str) -> None:
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"model.{name} must be in [0, 1), got {p}")


def _check_sizes(**sizes: int) -> None:
    for name, v in sizes.items():
        if v < 1:
            raise ConfigError(f"model.{name} must be >= 1, got {v}")


def _check_irange(r: float, name: str) -> None:
    if not r > 0.0:
        raise ConfigError(f"model.{name} must be > 0 (the half-width of the uniform init), got {r}")


def _one_hot(
    c: torch.Tensor | None, num_classes: int, who: str, like: torch.Tensor
) -> torch.Tensor:
    """y one-hot, in the dtype of the other input (so a float64 model works too)."""
    if c is None:
        raise ValueError(f"cgan {who} needs class labels c")
    return F.one_hot(c.long(), num_classes).to(like.dtype)


class Generator(base.Generator):
    REQUIRES_LABELS = True

    def __init__(
        self,
        data_shape,
        num_classes: int = 0,
        z_dim: int = 100,
        z_hidden: int = 200,
        y_hidden: int = 1000,
        joint_hidden: int = 1200,
        dropout: float = 0.5,
        z_dist: str = "uniform",
    ):
        super().__init__(z_dim, data_shape, z_dist)
        _check_classes(num_classes)
        _check_sizes(z_hidden=z_hidden, y_hidden=y_hidden, joint_hidden=joint_hidden)
        _check_dropout(dropout, "G.dropout")
        self.num_classes = int(num_classes)
        self.z_path = nn.Sequential(nn.Linear(z_dim, z_hidden), nn.ReLU(True), nn.Dropout(dropout))
        self.y_path = nn.Sequential(
            nn.Linear(num_classes, y_hidden), nn.ReLU(True), nn.Dropout(dropout)
        )
        out = [nn.Linear(joint_hidden, math.prod(self.data_shape))]
        if len(self.data_shape) == 3:
            out.append(nn.Tanh())
        self.joint = nn.Sequential(
            nn.Linear(z_hidden + y_hidden, joint_hidden),
            nn.ReLU(True),
            nn.Dropout(dropout),
            *out,
        )
        uniform_init(self, 0.05)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        y = _one_hot(c, self.num_classes, "G", z)
        h = torch.cat([self.z_path(z), self.y_path(y)], dim=1)
        return self.joint(h).view(z.shape[0], *self.data_shape)


class Discriminator(base.Discriminator):
    REQUIRES_LABELS = True

    def __init__(
        self,
        data_shape,
        num_classes: int = 0,
        x_units: int = 240,
        x_pieces: int = 5,
        y_units: int = 50,
        y_pieces: int = 5,
        joint_units: int = 240,
        joint_pieces: int = 4,
        dropout: float = 0.5,
        dropout_input: float = 0.0,
        irange: float = 0.005,
        y_irange: float | None = None,
        unit_pixels: bool = False,
        minibatch_features: int = 0,
        minibatch_mean: bool = False,
    ):
        super().__init__(data_shape)
        _check_classes(num_classes)
        # Salimans et al. 2016, Sec. 3.2: minibatch discrimination before the head
        # (not in the cgan paper; an option, off by default)
        minibatch = check_minibatch_features(minibatch_features, minibatch_mean)
        _check_sizes(
            x_units=x_units,
            x_pieces=x_pieces,
            y_units=y_units,
            y_pieces=y_pieces,
            joint_units=joint_units,
            joint_pieces=joint_pieces,
        )
        _check_dropout(dropout, "D.dropout")
        _check_dropout(dropout_input, "D.dropout_input")
        self.num_classes = int(num_classes)
        self.unit_pixels = unit_pixels_on(unit_pixels, self.data_shape)
        self.x_path = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout_input),
            Maxout(math.prod(self.data_shape), x_units, x_pieces),
            nn.Dropout(dropout),
        )
        self.y_path = nn.Sequential(Maxout(num_classes, y_units, y_pieces), nn.Dropout(dropout))
        self.joint = nn.Sequential(
            Maxout(x_units + y_units, joint_units, joint_pieces), nn.Dropout(dropout)
        )
        self.head = (
            MinibatchHead(joint_units, minibatch, mean=minibatch_mean)
            if minibatch
            else nn.Linear(joint_units, 1)
        )
        _check_irange(irange, "D.irange")
        uniform_init(self, irange)
        if y_irange is not None:
            _check_irange(y_irange, "D.y_irange")
            uniform_init(self.y_path, y_irange)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        y = _one_hot(c, self.num_classes, "D", x)
        if self.unit_pixels:
            x = to_unit_pixels(x)
        h = self.joint(torch.cat([self.x_path(x), self.y_path(y)], dim=1))
        return self.head(h).view(x.shape[0]), h

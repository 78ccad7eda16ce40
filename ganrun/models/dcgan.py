"""DCGAN — Radford, Metz & Chintala 2015 (arXiv:1511.06434), Sec. 3 and Fig. 1.

G: z -> fractionally-strided (transposed) 4x4 convolutions, stride 2, each
followed by BatchNorm and ReLU; tanh on the output layer, no BatchNorm there.
D: strided 4x4 convolutions, stride 2, BatchNorm (not on the input layer) and
LeakyReLU(0.2); a final valid convolution gives one logit. No pooling and no
fully connected hidden layers.

Sizes: at 64 px, G's channels are 8w-4w-2w-w (the paper's 1024-512-256-128 at
w=128; the PyTorch example's 512-256-128-64 at w=64). At 32 px the 8w stage is
dropped; at 28 px (MNIST) G starts from 7x7 with 2w-w.

Points (the 2-D mixtures): the paper is convolutional only. For vector data we
apply the same guidelines to fully connected layers — BatchNorm everywhere but
G's output and D's input, ReLU in G, LeakyReLU(0.2) in D — with three layers of
4w units, and a linear output in G (the mixtures are not bounded to [-1, 1]).
This form is ganrun's, not the paper's.
"""

from __future__ import annotations

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base

# resolution -> (side of the first feature map, number of stride-2 stages)
_LAYOUT = {28: (7, 2), 32: (4, 3), 64: (4, 4)}


class Generator(base.Generator):
    RESOLUTIONS = tuple(_LAYOUT)

    def __init__(self, data_shape, z_dim: int = 100, width: int = 64, z_dist: str = "uniform"):
        super().__init__(z_dim, data_shape, z_dist)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1:
            raise ConfigError(f"model.width must be >= 1, got {width}")
        if len(self.data_shape) == 1:
            h = 4 * width
            self.net = nn.Sequential(
                nn.Linear(z_dim, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(True),
                nn.Linear(h, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(True),
                nn.Linear(h, self.data_shape[0]),
            )  # fmt: skip
            base.dcgan_init(self)
            return
        channels, res, _ = self.data_shape
        start, stages = _LAYOUT[res]
        ch = width * 2 ** (stages - 1)
        layers: list[nn.Module] = [
            # project z (as a 1x1 map) to start x start x ch: the paper's first
            # "project and reshape" step as a convolution
            nn.ConvTranspose2d(z_dim, ch, start, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        base.dcgan_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.data_shape) == 1:
            return self.net(z)
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))


class Discriminator(base.Discriminator):
    RESOLUTIONS = tuple(_LAYOUT)

    def __init__(self, data_shape, width: int = 64, leak: float = 0.2):
        super().__init__(data_shape)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1:
            raise ConfigError(f"model.width must be >= 1, got {width}")
        if len(self.data_shape) == 1:
            h = 4 * width
            self.trunk = nn.Sequential(
                nn.Linear(self.data_shape[0], h), nn.LeakyReLU(leak, True),
                nn.Linear(h, h, bias=False), nn.BatchNorm1d(h), nn.LeakyReLU(leak, True),
            )  # fmt: skip
            self.head = nn.Linear(h, 1)
            base.dcgan_init(self)
            return
        channels, res, _ = self.data_shape
        start, stages = _LAYOUT[res]
        ch = width
        layers: list[nn.Module] = [
            nn.Conv2d(channels, ch, 4, 2, 1, bias=False),
            nn.LeakyReLU(leak, True),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch * 2),
                nn.LeakyReLU(leak, True),
            ]
            ch *= 2
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, 1, start, 1, 0, bias=False)  # one logit from the last feature map
        base.dcgan_init(self)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = self.trunk(x)
        return self.head(h).view(x.shape[0]), h.flatten(1)

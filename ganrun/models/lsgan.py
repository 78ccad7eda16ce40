"""LSGAN — Mao et al. 2017, "Least Squares Generative Adversarial Networks"
(arXiv:1611.04076, ICCV 2017); networks as in the authors' code
(github.com/xudonmao/LSGAN, re-read for this module: ``mcgan.py``, ``vgg.py``,
``train_chn.py``, ``train_lsun.py``).

The paper has no MNIST network. It has two: a 112 px scene network (Fig. 3,
``vgg.py``) and a 28 px network for handwritten Chinese characters (Fig. 4,
``mcgan.py``, trained on grey 28x28 glyphs: the closest data to MNIST digits).
``Generator``/``Discriminator`` build the one that fits ``dataset.resolution``:

* 28 px, the character network without its label pathway (the paper's 28 px
  model is conditional on 3,740 character classes; ganrun's LSGAN is the
  unconditional model of the paper's main experiments):
  G: z -> FC 7x7x(2w), BN, ReLU -> 5x5 deconv 2w stride 2, BN, ReLU ->
  5x5 deconv C stride 2, tanh.
  D: 5x5 conv 4w stride 2, LReLU -> 5x5 conv 5w stride 2, BN, LReLU ->
  FC 16w, BN, LReLU -> FC 1 (no sigmoid: the least-squares loss reads the raw
  output). At w = 64 these are the code's 128 / 256, 320, 1024 units; the
  code's D widths 256 and 320 are 1 + 256 and 64 + 256 (image or feature
  channels plus the 256-d label embedding it concatenates), kept as 256 and 320.
* 32, 64, 112, 128 px, the scene network (s = side / 16):
  G: z -> FC s x s x 4w, BN, ReLU -> [3x3 deconv 4w stride 2, BN, ReLU;
  3x3 deconv 4w stride 1, BN, ReLU] x 2 -> 3x3 deconv 2w stride 2, BN, ReLU ->
  3x3 deconv w stride 2, BN, ReLU -> 3x3 deconv C stride 1, tanh.
  D: 5x5 convs w, 2w, 4w, 8w, all stride 2, BN after all but the first,
  LReLU(0.2) -> FC 1. At w = 64: the paper's 256-...-64 G and DCGAN's
  64-...-512 D at 112 px.

z ~ U(-1, 1) of 1024 dimensions (both scripts). Weights N(0, 0.02), biases 0
(DCGAN-tensorflow's ``ops.py``, which the code uses). "SAME" padding: 5x5
stride-2 convolutions halve the side (padding 2), transposed ones double it.

Deviations: the 28 px G ends in tanh, not the code's sigmoid (ganrun's images
are in [-1, 1]); BatchNorm scales start at N(1, 0.02) (``base.dcgan_init``),
not at exactly 1; bias-free convolutions where a BatchNorm follows (its shift
makes the bias redundant).
"""

from __future__ import annotations

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base

SCENE_RESOLUTIONS = (32, 64, 112, 128)  # side / 16 is the first feature map
RESOLUTIONS = (28, *SCENE_RESOLUTIONS)


def _deconv(cin: int, cout: int, k: int, stride: int, bn: bool = True) -> list[nn.Module]:
    """A "SAME" transposed convolution (side x stride), then BN + ReLU (or bare)."""
    pad = k // 2
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(cin, cout, k, stride, pad, output_padding=stride - 1, bias=not bn)
    ]
    if bn:
        layers += [nn.BatchNorm2d(cout), nn.ReLU(True)]
    return layers


class Generator(base.Generator):
    RESOLUTIONS = RESOLUTIONS
    IMAGES_ONLY = True

    def __init__(self, data_shape, z_dim: int = 1024, width: int = 64, z_dist: str = "uniform"):
        super().__init__(z_dim, data_shape, z_dist)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1:
            raise ConfigError(f"model.width must be >= 1, got {width}")
        channels, res, _ = self.data_shape
        w = int(width)
        if res == 28:  # Fig. 4 / mcgan.py
            self.start, self.fc_channels = 7, 2 * w
            conv = [*_deconv(2 * w, 2 * w, 5, 2), *_deconv(2 * w, channels, 5, 2, bn=False)]
        else:  # Fig. 3 / vgg.py
            self.start, self.fc_channels = res // 16, 4 * w
            conv = [
                *_deconv(4 * w, 4 * w, 3, 2), *_deconv(4 * w, 4 * w, 3, 1),
                *_deconv(4 * w, 4 * w, 3, 2), *_deconv(4 * w, 4 * w, 3, 1),
                *_deconv(4 * w, 2 * w, 3, 2), *_deconv(2 * w, w, 3, 2),
                *_deconv(w, channels, 3, 1, bn=False),
            ]  # fmt: skip
        n = self.fc_channels * self.start**2
        self.fc = nn.Sequential(
            nn.Linear(self.z_dim, n, bias=False), nn.BatchNorm1d(n), nn.ReLU(True)
        )
        self.conv = nn.Sequential(*conv, nn.Tanh())
        base.dcgan_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.fc_channels, self.start, self.start)
        return self.conv(h)


class Discriminator(base.Discriminator):
    RESOLUTIONS = RESOLUTIONS
    IMAGES_ONLY = True

    def __init__(self, data_shape, width: int = 64, leak: float = 0.2):
        super().__init__(data_shape)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1:
            raise ConfigError(f"model.width must be >= 1, got {width}")
        channels, res, _ = self.data_shape
        w = int(width)
        act = lambda: nn.LeakyReLU(leak, True)  # noqa: E731
        if res == 28:  # Fig. 4 / mcgan.py: two convs, then a hidden FC layer
            trunk = [
                nn.Conv2d(channels, 4 * w, 5, 2, 2), act(),
                nn.Conv2d(4 * w, 5 * w, 5, 2, 2, bias=False), nn.BatchNorm2d(5 * w), act(),
                nn.Flatten(),
                nn.Linear(5 * w * 7 * 7, 16 * w, bias=False), nn.BatchNorm1d(16 * w), act(),
            ]  # fmt: skip
            features = 16 * w
        else:  # Fig. 3 / vgg.py: DCGAN's D with 5x5 kernels
            trunk = [nn.Conv2d(channels, w, 5, 2, 2), act()]
            ch = w
            for _ in range(3):
                trunk += [nn.Conv2d(ch, 2 * ch, 5, 2, 2, bias=False), nn.BatchNorm2d(2 * ch), act()]
                ch *= 2
            trunk.append(nn.Flatten())
            features = ch * (res // 16) ** 2
        self.trunk = nn.Sequential(*trunk)
        self.head = nn.Linear(features, 1)
        base.dcgan_init(self)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = self.trunk(x)
        return self.head(h).view(x.shape[0]), h

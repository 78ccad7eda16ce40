"""SN-GAN — Miyato et al. 2018, "Spectral Normalization for Generative
Adversarial Networks" (arXiv:1802.05957, ICLR 2018).

Spectral normalization (Sec. 2.1, Algorithm 1): every weight of D is divided
by its largest singular value, estimated by one power iteration per training
forward pass (``ganrun.models.layers.sn``), which bounds D's Lipschitz constant.

Standard CNN (App. B.4, Table 3), ``Generator``/``Discriminator``:

* G: z in R^128 ~ N(0, I); dense -> M_g x M_g x 512 (M_g = resolution / 8);
  4x4 stride-2 deconvs to 256, 128, 64 channels, each BN + ReLU; 3x3 conv to
  the image channels, tanh.
* D: 3x3 conv 64; 4x4 s2 conv 64; 3x3 conv 128; 4x4 s2 conv 128; 3x3 conv
  256; 4x4 s2 conv 256; 3x3 conv 512; each lReLU(0.1); dense -> 1. Every
  layer spectrally normalized.
* ``width`` w scales the channels (w = 64 gives the table's 64..512).
* G's ``norm=virtual_batch`` swaps its BatchNorms for virtual batch norm
  (Salimans et al. 2016, Sec. 3.4; ganrun/models/vbn.py), ganrun's option.
* Resolutions 32 (CIFAR-10) and 48 (STL-10, M_g = 6) as in the paper; 64 by
  the same rule (ganrun's addition).

ResNet (App. B.4, Table 4, CIFAR-10), ``ResNetGenerator``/``ResNetDiscriminator``:

* G: z in R^128; dense -> 4 x 4 x 256; three up-ResBlocks of 256 channels;
  BN, ReLU, 3x3 conv, tanh.
* D: ResBlock down 128 (the "optimized" first block); ResBlock down 128; two
  ResBlocks 128; ReLU; global sum pooling; dense -> 1. Spectral norm on every
  layer. Resolution 32 only (the paper's STL-10 and ImageNet ResNets differ).
* Blocks are ``GBlock``/``DBlock`` of ``ganrun.models.layers``.

Initialization follows the authors' code (github.com/pfnet-research/
sngan_projection, chainer-gan-lib): N(0, 0.02) for the standard CNN; Glorot
uniform with gain sqrt(2) on residual convs and gain 1 on shortcuts and the
dense/output layers for the ResNet. Weights are initialized before spectral
normalization is attached, so its power-iteration vectors match them.

Deviations: Table 3 does not mention a normalization after G's dense layer;
like the authors' code we apply BN + ReLU there. The authors' code widens D's
channels at the stride-2 convs (64-128-128-256-256-512-512); we follow the
paper's table (64-64-128-128-256-256-512).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base, vbn
from ganrun.models.layers import DBlock, GBlock, sn

RESOLUTIONS = (32, 48, 64)


def _normal(module: nn.Module, std: float = 0.02) -> nn.Module:
    nn.init.normal_(module.weight, 0.0, std)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def _glorot(module: nn.Module, gain: float = 1.0) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def _check_width(width: int) -> None:
    if width < 1:
        raise ConfigError(f"model.width must be >= 1, got {width}")


def _check(cls, data_shape) -> None:
    if (why := cls.check_data(tuple(data_shape), 0)) is not None:
        raise ConfigError(why)


# --------------------------------------------------------------------------- standard CNN
class Generator(base.Generator):
    RESOLUTIONS = RESOLUTIONS
    IMAGES_ONLY = True

    def __init__(
        self,
        data_shape,
        z_dim: int = 128,
        width: int = 64,
        z_dist: str = "normal",
        norm: str = "batch",
        reference_size: int = 64,
        reference_seed: int = 0,
    ):
        super().__init__(z_dim, data_shape, z_dist)
        _check(type(self), self.data_shape)
        _check_width(width)
        vbn.check_norm(norm, reference_size)
        channels, res, _ = self.data_shape
        self.bottom, ch = res // 8, 8 * width
        self.dense = nn.Sequential(
            _normal(nn.Linear(z_dim, self.bottom**2 * ch)),
            vbn.norm_layer(norm, self.bottom**2 * ch, reference_size, image=False),
            nn.ReLU(True),
        )
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [
                _normal(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1)),
                vbn.norm_layer(norm, ch // 2, reference_size, image=True),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [_normal(nn.Conv2d(ch, channels, 3, 1, 1)), nn.Tanh()]
        self.conv = nn.Sequential(*layers)
        # model.G.norm=virtual_batch: Salimans et al. 2016, Sec. 3.4 (ganrun/models/vbn.py)
        self.reference = (
            vbn.make_reference(self, reference_size, reference_seed)
            if norm == "virtual_batch"
            else None
        )

    def _net(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dense(z).view(z.shape[0], -1, self.bottom, self.bottom))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return vbn.run(self.reference, self._net, z)


class Discriminator(base.Discriminator):
    RESOLUTIONS = RESOLUTIONS
    IMAGES_ONLY = True

    def __init__(self, data_shape, width: int = 64, leak: float = 0.1, spectral_norm: bool = True):
        super().__init__(data_shape)
        _check(type(self), self.data_shape)
        _check_width(width)
        channels, res, _ = self.data_shape
        w = width
        # (in, out, kernel, stride) per Table 3
        spec = [
            (channels, w, 3, 1), (w, w, 4, 2),
            (w, 2 * w, 3, 1), (2 * w, 2 * w, 4, 2),
            (2 * w, 4 * w, 3, 1), (4 * w, 4 * w, 4, 2),
            (4 * w, 8 * w, 3, 1),
        ]  # fmt: skip
        layers: list[nn.Module] = []
        for cin, cout, k, s in spec:
            conv = _normal(nn.Conv2d(cin, cout, k, s, 1))
            layers += [sn(conv, spectral_norm), nn.LeakyReLU(leak, True)]
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.head = sn(_normal(nn.Linear(8 * w * (res // 8) ** 2, 1)), spectral_norm)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = self.trunk(x)
        return self.head(h).view(x.shape[0]), h


# --------------------------------------------------------------------------- ResNet
def _init_block(block: nn.Module, use_sn: bool) -> nn.Module:
    """Glorot init (gain sqrt(2) on the residual convs, 1 on the shortcut), then
    spectral norm on the block's convs when ``use_sn``."""
    for name in ("conv1", "conv2", "shortcut"):
        conv = getattr(block, name, None)
        if conv is None:
            continue
        _glorot(conv, 1.0 if name == "shortcut" else math.sqrt(2.0))
        setattr(block, name, sn(conv, use_sn))
    return block


class ResNetGenerator(base.Generator):
    RESOLUTIONS = (32,)
    IMAGES_ONLY = True

    def __init__(self, data_shape, z_dim: int = 128, width: int = 256, z_dist: str = "normal"):
        super().__init__(z_dim, data_shape, z_dist)
        _check(type(self), self.data_shape)
        _check_width(width)
        channels = self.data_shape[0]
        self.bottom, self.width = 4, width
        self.dense = _glorot(nn.Linear(z_dim, self.bottom**2 * width))
        self.blocks = nn.ModuleList(
            [_init_block(GBlock(width, width, upsample=True), False) for _ in range(3)]
        )
        self.out = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            _glorot(nn.Conv2d(width, channels, 3, 1, 1)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.dense(z).view(z.shape[0], self.width, self.bottom, self.bottom)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


class ResNetDiscriminator(base.Discriminator):
    RESOLUTIONS = (32,)
    IMAGES_ONLY = True

    def __init__(self, data_shape, width: int = 128, spectral_norm: bool = True):
        super().__init__(data_shape)
        _check(type(self), self.data_shape)
        _check_width(width)
        channels = self.data_shape[0]
        blocks = [
            DBlock(channels, width, downsample=True, first=True, use_sn=False),
            DBlock(width, width, downsample=True, use_sn=False),
            DBlock(width, width, downsample=False, use_sn=False),
            DBlock(width, width, downsample=False, use_sn=False),
        ]
        self.blocks = nn.Sequential(*[_init_block(b, spectral_norm) for b in blocks])
        self.head = sn(_glorot(nn.Linear(width, 1, bias=False)), spectral_norm)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = torch.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling
        return self.head(h).view(x.shape[0]), h

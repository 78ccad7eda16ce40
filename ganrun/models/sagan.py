"""SAGAN — Zhang, Goodfellow, Metaxas & Odena 2018, "Self-Attention Generative
Adversarial Networks" (arXiv:1805.08318).

ResNet G and D (the SN-GAN architecture the paper builds on, Miyato et al. 2018,
App. B) with one self-attention block in each (Sec. 3; ``layers.SelfAttention``:
1x1 convs f, g, h to C/8 channels, output projection v, gamma initialised to 0),
spectral normalization in both G and D (Sec. 4.1), hinge loss (Eq. 4) and TTUR
(Sec. 4.2, 5: Adam beta = (0, 0.9), lr_D 4e-4, lr_G 1e-4, one D step per G step).
With class labels G uses conditional BatchNorm and D is a projection
discriminator (Miyato & Koyama 2018: logit = psi(phi(x)) + <embed(y), phi(x)>),
as in the paper's ImageNet models (Sec. 5); without labels both are plain.

Where the attention goes: the paper (Sec. 5.1, Table 1) finds attention on
middle-to-high level feature maps (feat32, feat64 of a 128 px model) better than
on low-level ones (feat8, feat16). The paper trains only at 128 px; here the
default is half the image side (16x16 at 32 px, 32x32 at 64 px: feat64 of 128
scaled down), in G after the block that produces that size and in D after the
block that reduces to it. ``attention_res`` moves it, ``attention=false``
removes it.

Sizes (``width`` = the reference code's gf_dim = df_dim, 64): at 32 px the SN-GAN
CIFAR-10 ResNet (G 4*width = 256 channels in three up-blocks, D 2*width = 128
in four blocks, the last two without downsampling); at 64 px the SAGAN/SN-GAN
ImageNet ResNet with its 128 px stage removed (G 16w-8w-4w-2w-w, D w-2w-4w-8w-16w).
Weights start Xavier-uniform, as in the reference TensorFlow code.

Deviations: the paper states no architecture below 128 px; the 32/64 px layouts
above are SN-GAN's. The reference code's attention max-pools keys and values
(and uses C/2 value channels); we follow the paper's equations (no pooling, C/8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base, layers


def attention_side(resolution: int, enabled: bool, requested: int | None) -> int | None:
    """Feature-map side where G and D get their self-attention block (None = none).
    Valid sides are those both networks produce: 8 ... resolution / 2."""
    if not enabled:
        return None
    valid = [2**k for k in range(3, base.log2_int(resolution))]
    side = resolution // 2 if requested is None else int(requested)
    if side not in valid:
        raise ConfigError(
            f"model.attention_res={side} is not a feature-map size of this {resolution} px "
            f"model; choose from {', '.join(map(str, valid))} (or model.attention=false)"
        )
    return side


def check_args(cls, data_shape, num_classes: int, width: int) -> None:
    if (why := cls.check_data(tuple(data_shape), num_classes)) is not None:
        raise ConfigError(why)
    if width < 1:
        raise ConfigError(f"model.width must be >= 1, got {width}")


class Generator(base.Generator):
    """z (B, z_dim) -> linear -> 4x4 -> ResNet up-blocks [-> self-attention] -> BN-ReLU-conv-tanh."""

    RESOLUTIONS = (32, 64)
    IMAGES_ONLY = True
    # channel multipliers of `width`: the 4x4 input, then each up-block's output
    LAYOUT = {32: (4, 4, 4, 4), 64: (16, 8, 4, 2, 1)}

    def __init__(
        self,
        data_shape,
        num_classes: int = 0,
        z_dim: int = 128,
        width: int = 64,
        attention: bool = True,
        attention_res: int | None = None,
        spectral_norm: bool = True,
    ):
        super().__init__(z_dim, data_shape, "normal")
        check_args(self, self.data_shape, num_classes, width)
        channels, res, _ = self.data_shape
        self.num_classes = int(num_classes)
        self.attention_res = attention_side(res, attention, attention_res)
        ch = [m * width for m in self.LAYOUT[res]]
        self.linear = layers.linear(z_dim, ch[0] * 16, spectral_norm)
        blocks: list[nn.Module] = []
        side = 4
        for cin, cout in zip(ch[:-1], ch[1:]):
            blocks.append(layers.GBlock(cin, cout, True, self.num_classes, 0, spectral_norm))
            side *= 2
            if side == self.attention_res:
                blocks.append(layers.SelfAttention(cout, spectral_norm))
        self.blocks = nn.ModuleList(blocks)
        self.out_bn = nn.BatchNorm2d(ch[-1])
        self.out_conv = layers.conv3x3(ch[-1], channels, spectral_norm)
        layers.init_weights(self, "xavier")

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes and c is None:
            raise ValueError("this SAGAN generator is class-conditional: call G(z, c)")
        h = self.linear(z).view(z.shape[0], -1, 4, 4)
        for block in self.blocks:
            h = block(h, c) if isinstance(block, layers.GBlock) else block(h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class Discriminator(base.Discriminator):
    """ResNet down-blocks [-> self-attention] -> ReLU -> global sum pooling = phi(x);
    logit = linear(phi) (+ <embed(y), phi> with labels: the projection discriminator)."""

    RESOLUTIONS = (32, 64)
    IMAGES_ONLY = True
    # per block: output channels as multipliers of `width`, and whether it halves the size
    LAYOUT = {
        32: ((2, 2, 2, 2), (True, True, False, False)),
        64: ((1, 2, 4, 8, 16), (True, True, True, True, False)),
    }
    INIT = "xavier"

    def __init__(
        self,
        data_shape,
        num_classes: int = 0,
        width: int = 64,
        attention: bool = True,
        attention_res: int | None = None,
        spectral_norm: bool = True,
    ):
        super().__init__(data_shape)
        check_args(self, self.data_shape, num_classes, width)
        channels, res, _ = self.data_shape
        self.num_classes = int(num_classes)
        self.attention_res = attention_side(res, attention, attention_res)
        mults, downs = self.LAYOUT[res]
        blocks: list[nn.Module] = []
        cin, side, placed = channels, res, False
        for i, (m, down) in enumerate(zip(mults, downs)):
            cout = m * width
            blocks.append(layers.DBlock(cin, cout, down, first=i == 0, use_sn=spectral_norm))
            side //= 2 if down else 1
            if side == self.attention_res and not placed:
                blocks.append(layers.SelfAttention(cout, spectral_norm))
                placed = True
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.linear = layers.linear(cin, 1, spectral_norm)
        self.embed = (
            layers.sn(nn.Embedding(self.num_classes, cin), spectral_norm)
            if self.num_classes
            else None
        )
        layers.init_weights(self, self.INIT)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        phi = F.relu(self.blocks(x)).sum(dim=(2, 3))  # (B, C): global sum pooling
        logit = self.linear(phi).squeeze(1)
        if self.embed is not None:
            if c is None:
                raise ValueError("this projection discriminator is class-conditional: call D(x, c)")
            logit = logit + (self.embed(c) * phi).sum(1)
        return logit, phi

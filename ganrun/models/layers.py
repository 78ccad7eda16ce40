"""Building blocks shared by the convolutional models (SN-GAN, SAGAN, BigGAN, ...).

* ``sn(module, enabled)`` — spectral normalization as a layer-factory flag
  (Miyato et al. 2018): W / sigma(W), sigma estimated by one power iteration per
  forward pass in training mode.
* ``ConditionalBatchNorm2d`` — BatchNorm whose gain and bias come from a class
  embedding (de Vries et al. 2017; Miyato & Koyama 2018) or from a conditioning
  vector through linear maps (BigGAN's shared embedding + z chunk).
* ``SelfAttention`` — SAGAN's block (Zhang et al. 2018, Sec. 3): 1x1 convs f, g,
  h, output projection v, and a learned gamma initialised to 0.
* ``GBlock`` / ``DBlock`` — the ResNet blocks of Gulrajani et al. 2017 and
  Miyato et al. 2018 (App. B): pre-activation, nearest-neighbour upsampling in
  G, average-pool downsampling in D, 1x1 learnable shortcuts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sn(
    module: nn.Module, enabled: bool = True, n_power_iterations: int = 1, eps: float = 1e-6
) -> nn.Module:
    """Wrap a layer's weight in spectral normalization when ``enabled``."""
    if not enabled:
        return module
    return nn.utils.parametrizations.spectral_norm(
        module, n_power_iterations=n_power_iterations, eps=eps
    )


def conv3x3(cin: int, cout: int, use_sn: bool = False, bias: bool = True) -> nn.Module:
    return sn(nn.Conv2d(cin, cout, 3, 1, 1, bias=bias), use_sn)


def conv1x1(cin: int, cout: int, use_sn: bool = False, bias: bool = True) -> nn.Module:
    return sn(nn.Conv2d(cin, cout, 1, 1, 0, bias=bias), use_sn)


def linear(cin: int, cout: int, use_sn: bool = False, bias: bool = True) -> nn.Module:
    return sn(nn.Linear(cin, cout, bias=bias), use_sn)


class ConditionalBatchNorm2d(nn.Module):
    """y = gain(c) * BN(x) + bias(c), with BN's own affine switched off.

    * ``num_classes > 0``: gain and bias are per-class embeddings (gain starts at 1,
      bias at 0); the condition is a LongTensor of labels.
    * ``cond_dim > 0``: gain = 1 + W_g c and bias = W_b c (BigGAN, Brock et al.
      2018, Sec. 4 and App. B); the condition is a float vector (B, cond_dim).
    * neither: ordinary BatchNorm with its learned affine; the condition is ignored.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int = 0,
        cond_dim: int = 0,
        use_sn: bool = False,
        momentum: float = 0.1,
    ):
        super().__init__()
        self.num_classes, self.cond_dim = int(num_classes), int(cond_dim)
        conditional = self.num_classes > 0 or self.cond_dim > 0
        self.bn = nn.BatchNorm2d(num_features, affine=not conditional, momentum=momentum)
        if self.num_classes > 0:
            self.gain = nn.Embedding(self.num_classes, num_features)
            self.bias = nn.Embedding(self.num_classes, num_features)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)
        elif self.cond_dim > 0:
            self.gain = linear(self.cond_dim, num_features, use_sn, bias=False)
            self.bias = linear(self.cond_dim, num_features, use_sn, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bn(x)
        if self.num_classes > 0:
            if c is None:
                raise ValueError("ConditionalBatchNorm2d with classes needs labels")
            return self.gain(c)[:, :, None, None] * h + self.bias(c)[:, :, None, None]
        if self.cond_dim > 0:
            if c is None:
                raise ValueError("ConditionalBatchNorm2d with cond_dim needs a conditioning vector")
            return (1 + self.gain(c))[:, :, None, None] * h + self.bias(c)[:, :, None, None]
        return h


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2018, Sec. 3, Eqs. 1-3).

    s_ij = f(x_i)^T g(x_j), beta = softmax over i; o_j = v(sum_i beta_ij h(x_i));
    y = gamma * o + x with gamma a learned scalar initialised to 0, so a fresh
    block is the identity. f, g, h map C -> C/8 channels (the paper's C-bar), v
    maps back to C; all four are 1x1 convolutions.
    """

    def __init__(self, channels: int, use_sn: bool = True, reduction: int = 8):
        super().__init__()
        inner = max(1, channels // reduction)
        self.f = conv1x1(channels, inner, use_sn, bias=False)
        self.g = conv1x1(channels, inner, use_sn, bias=False)
        self.h = conv1x1(channels, inner, use_sn, bias=False)
        self.v = conv1x1(inner, channels, use_sn, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        n = hgt * wid
        f = self.f(x).view(b, -1, n)  # (B, C', N)
        g = self.g(x).view(b, -1, n)
        h = self.h(x).view(b, -1, n)
        attn = torch.softmax(
            torch.bmm(f.transpose(1, 2), g), dim=1
        )  # (B, N_i, N_j), softmax over i
        o = torch.bmm(h, attn).view(b, -1, hgt, wid)  # o_j = sum_i beta_ij h_i
        return x + self.gamma * self.v(o)


class GBlock(nn.Module):
    """Generator ResNet block: BN-ReLU-up-conv3x3-BN-ReLU-conv3x3, plus an
    up-conv1x1 shortcut. The BNs are conditional when ``num_classes`` or
    ``cond_dim`` is set."""

    def __init__(
        self,
        cin: int,
        cout: int,
        upsample: bool = True,
        num_classes: int = 0,
        cond_dim: int = 0,
        use_sn: bool = False,
    ):
        super().__init__()
        self.upsample = upsample
        self.bn1 = ConditionalBatchNorm2d(cin, num_classes, cond_dim, use_sn)
        self.conv1 = conv3x3(cin, cout, use_sn)
        self.bn2 = ConditionalBatchNorm2d(cout, num_classes, cond_dim, use_sn)
        self.conv2 = conv3x3(cout, cout, use_sn)
        self.shortcut = conv1x1(cin, cout, use_sn) if (cin != cout or upsample) else None

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.bn1(x, c))
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), c)))
        return h + (self.shortcut(x) if self.shortcut is not None else x)


class DBlock(nn.Module):
    """Discriminator ResNet block: ReLU-conv3x3-ReLU-conv3x3-avgpool, plus a
    conv1x1-avgpool shortcut. The first block of a D takes the image itself: no
    ReLU before its first conv, and its shortcut pools before the conv
    (Miyato et al. 2018, App. B, "optimized block")."""

    def __init__(
        self, cin: int, cout: int, downsample: bool = True, first: bool = False, use_sn: bool = True
    ):
        super().__init__()
        self.downsample, self.first = downsample, first
        self.conv1 = conv3x3(cin, cout, use_sn)
        self.conv2 = conv3x3(cout, cout, use_sn)
        self.shortcut = conv1x1(cin, cout, use_sn) if (cin != cout or downsample) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:
            if self.downsample:
                s = F.avg_pool2d(s, 2)
            if self.shortcut is not None:
                s = self.shortcut(s)
        else:
            if self.shortcut is not None:
                s = self.shortcut(s)
            if self.downsample:
                s = F.avg_pool2d(s, 2)
        return h + s


INIT_SCHEMES = ("ortho", "xavier", "normal")


@torch.no_grad()
def init_weights(module: nn.Module, scheme: str) -> None:
    """Re-initialise every conv, linear and embedding weight of ``module``:
    ``ortho`` (Saxe et al. 2014; BigGAN, Brock et al. 2018, App. B), ``xavier``
    (uniform Glorot, the SN-GAN/SAGAN reference code) or ``normal`` (N(0, 0.02)).
    Biases become 0. The class tables of ``ConditionalBatchNorm2d`` keep their
    identity start (gain 1, bias 0). Spectrally normalised layers get their power
    iteration restarted on the new weight, so sigma is right from the first step."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme {scheme!r} is not one of {', '.join(INIT_SCHEMES)}")
    keep = {
        id(m)
        for cbn in module.modules()
        if isinstance(cbn, ConditionalBatchNorm2d) and cbn.num_classes > 0
        for m in (cbn.gain, cbn.bias)
    }
    for m in module.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)) or id(m) in keep:
            continue
        parametrized = nn.utils.parametrize.is_parametrized(m, "weight")
        w = m.parametrizations.weight.original if parametrized else m.weight
        if scheme == "ortho":
            nn.init.orthogonal_(w)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(w)
        else:
            nn.init.normal_(w, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
        if parametrized:
            for p in m.parametrizations.weight:
                if hasattr(p, "_power_method") and w.ndim > 1:
                    p._power_method(p._reshape_weight_to_matrix(w), 15)

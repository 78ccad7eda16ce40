"""StyleGAN — Karras, Laine & Aila 2019, "A Style-Based Generator Architecture for
Generative Adversarial Networks" (arXiv:1812.04948), at a fixed resolution.

Generator (Sec. 2, Fig. 1b):

* mapping network f: z -> w, 8 fully connected layers of 512 units, LeakyReLU
  0.2, z normalised to unit second moment first; its learning rate is 0.01x
  the synthesis network's (App. C: "lr multiplier 0.01 for the mapping").
* synthesis network g: a learned constant 4x4x512 input, then per resolution two
  3x3 convolutions (the first after 2x nearest upsampling, followed by a [1,2,1]
  binomial blur: "bilinear upsampling", Sec. 2 / Table 1 B). After every conv:
  per-pixel noise (one N(0, 1) image per sample) times learned per-channel
  scales (initialised to 0, Sec. 3.2), bias, LeakyReLU 0.2, then **AdaIN**
  (Eq. 1): instance-normalise each channel, then scale and shift it by the style
  y = A(w), a learned affine map of w per layer (scale = 1 + y_s, as in the
  reference code). A 1x1 toRGB conv makes the image (linear output).
* style mixing regularization (Sec. 3.1, Table 2): in training mode, with
  probability 0.9 per minibatch a second w from another z replaces the first
  from a random crossover layer on. It happens inside ``G.forward`` so both the
  D and the G phase see mixed samples, as in the reference code.
* truncation in W (Sec. 3, Eq. 3): w' = w_avg + psi (w - w_avg), with w_avg a
  moving average of w (beta 0.995) kept as a buffer (so it is checkpointed);
  like the reference code it applies to the first 8 style layers (4^2 - 32^2)
  only. ``G(z, truncation=psi)``; ``TRUNCATION_SPACE = "w"`` tells ``ganrun
  sample`` to truncate here rather than in Z.

AdaIN, not StyleGAN2's weight modulation/demodulation: this module implements
the 2019 paper; demodulation (Karras et al. 2020) fixes AdaIN's droplet
artifacts but changes the architecture the issue names.

Discriminator: the Progressive GAN D (Karras et al. 2018) as StyleGAN uses it:
fromRGB 1x1, per resolution conv3x3 + blur + conv3x3 + 2x average-pool
downsampling, then the minibatch standard deviation layer (ProGAN Sec. 3: one
extra feature map, groups of 4), conv3x3, dense, dense -> 1 logit.

Both use the equalized learning rate (ProGAN Sec. 4.1): weights ~ N(0, 1) scaled
at run time by He's constant sqrt(2 / fan_in) (gain 1 for toRGB, the style
maps and D's last layer). No batch norm, no spectral norm.

Channels: nf(side) = min(channel_base / side, width) with the paper's
channel_base 16384 (fmap_base 8192 in the code's stage indexing) and width
(fmap_max) 512: 512 everywhere up to 32 px, 256 at 64 px. ``model.width`` caps
it for small runs.

Fixed resolution: no progressive growing (StyleGAN trains progressively; its
successors show it is not needed). The generator's output is linear in
training mode (the paper's); in eval mode it is clamped to [-1, 1], which the
ganrun model contract promises and the reference code does when it converts
images to 8 bits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base

SQRT2 = math.sqrt(2.0)
NOISE_MODES = ("random", "const", "none")


# --------------------------------------------------------------------------- building blocks
def he_constant(fan_in: int, gain: float = SQRT2) -> float:
    """He et al. 2015's per-layer scale gain / sqrt(fan_in) (ProGAN Sec. 4.1)."""
    return gain / math.sqrt(fan_in)


class EqualLinear(nn.Module):
    """Dense layer with equalized learning rate: the stored weight is N(0, 1 / lr_mul^2)
    and is scaled by he_constant * lr_mul at run time; the bias by lr_mul. Under Adam
    this makes every layer learn at the same speed, and ``lr_mul`` slows one down."""

    def __init__(
        self, cin: int, cout: int, bias: bool = True, gain: float = SQRT2, lr_mul: float = 1.0
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = he_constant(cin, gain) * lr_mul
        self.lr_mul = lr_mul

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.effective_weight(), b)


class EqualConv2d(nn.Module):
    """Square convolution (stride 1, same padding) with equalized learning rate."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, gain: float = SQRT2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = he_constant(cin * kernel * kernel, gain)
        self.padding = kernel // 2

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


class Blur(nn.Module):
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 low-pass filter (StyleGAN Sec. 2, after
    Zhang 2019), applied after each upsampling and before each downsampling."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16.0)[None, None], False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.kernel.expand(c, 1, 3, 3).to(x.dtype), padding=1, groups=c)


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8):
    """Adaptive instance normalization (Huang & Belongie 2017; StyleGAN Eq. 1): every
    channel of every sample is normalised to mean 0 and std 1 over its pixels, then
    given the style's std ``scale`` (B, C) and mean ``bias`` (B, C)."""
    x = x - x.mean(dim=(2, 3), keepdim=True)
    x = x * torch.rsqrt(x.pow(2).mean(dim=(2, 3), keepdim=True) + eps)
    return x * scale[:, :, None, None] + bias[:, :, None, None]


def truncate_w(w: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick in W (StyleGAN Eq. 3): w' = w_avg + psi (w - w_avg)
    (as torch.lerp, which is exact at psi = 0 and psi = 1)."""
    return torch.lerp(w_avg.to(w.dtype).expand_as(w), w, float(psi))


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1) -> torch.Tensor:
    """ProGAN's minibatch standard deviation (Karras et al. 2018, Sec. 3): split the batch
    into groups (sample n joins group n % (N / G)), take each feature's std over a group,
    average it over channels and pixels, and append it as ``num_features`` constant maps.
    The group is the largest divisor of the batch size up to ``group_size``."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.reshape(g, -1, num_features, c // num_features, h, w)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt()  # (N/G, F, C/F, H, W)
    y = y.mean(dim=(2, 3, 4)).reshape(-1, num_features, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class MappingNetwork(nn.Module):
    """z -> w: normalise z, then ``layers`` dense layers with LeakyReLU 0.2 (Sec. 2)."""

    def __init__(self, z_dim: int, w_dim: int, layers: int = 8, lr_mul: float = 0.01):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, lr_mul=lr_mul) for a, b in zip(dims[:-1], dims[1:])
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
        return x


class StyledLayer(nn.Module):
    """[upsample, conv, blur] -> noise -> bias -> LeakyReLU -> AdaIN with style A(w).
    ``kind``: "const" (no conv: the 4x4 input), "conv", or "up" (2x upsampling first)."""

    def __init__(self, cin: int, cout: int, side: int, w_dim: int, kind: str):
        super().__init__()
        self.up = kind == "up"
        self.conv = None if kind == "const" else EqualConv2d(cin, cout, 3, bias=False)
        self.blur = Blur() if self.up else None
        self.noise_strength = nn.Parameter(torch.zeros(cout))  # B in Fig. 1b, starts at 0
        self.register_buffer("noise_const", torch.randn(1, 1, side, side))  # for noise="const"
        self.bias = nn.Parameter(torch.zeros(cout))
        self.style = EqualLinear(w_dim, 2 * cout, gain=1.0)  # A in Fig. 1b

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: str = "random") -> torch.Tensor:
        if self.conv is not None:
            if self.up:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.conv(x)
            if self.blur is not None:
                x = self.blur(x)
        if noise != "none":
            n = self.noise_const if noise == "const" else None
            if n is None:
                n = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device)
            x = x + self.noise_strength.view(1, -1, 1, 1) * n.to(x.dtype)
        x = F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2)
        y_scale, y_bias = self.style(w).chunk(2, dim=1)
        return adain(x, 1.0 + y_scale, y_bias)


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> image; layer i takes style ws[:, i]."""

    def __init__(self, resolution: int, channels: int, w_dim: int, nf):
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, nf(4), 4, 4))
        layers = [StyledLayer(nf(4), nf(4), 4, w_dim, "const")]
        layers.append(StyledLayer(nf(4), nf(4), 4, w_dim, "conv"))
        side = 8
        while side <= resolution:
            layers.append(StyledLayer(nf(side // 2), nf(side), side, w_dim, "up"))
            layers.append(StyledLayer(nf(side), nf(side), side, w_dim, "conv"))
            side *= 2
        self.layers = nn.ModuleList(layers)
        self.to_rgb = EqualConv2d(nf(resolution), channels, 1, gain=1.0)

    def forward(self, ws: torch.Tensor, noise: str = "random") -> torch.Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i], noise)
        return self.to_rgb(x)


def _channels(channel_base: int, width: int):
    if channel_base < 1 or width < 1:
        raise ConfigError(
            f"model.width and channel_base must be >= 1, got {width} and {channel_base}"
        )
    return lambda side: max(1, min(channel_base // side, width))


# --------------------------------------------------------------------------- networks
class Generator(base.Generator):
    RESOLUTIONS = (32, 64, 128)
    IMAGES_ONLY = True
    TRUNCATION_SPACE = "w"

    def __init__(
        self,
        data_shape,
        z_dim: int = 512,
        w_dim: int = 512,
        width: int = 512,
        channel_base: int = 16384,
        mapping_layers: int = 8,
        mapping_lr_mul: float = 0.01,
        style_mixing_prob: float = 0.9,
        w_avg_beta: float = 0.995,
        truncation_cutoff: int | None = 8,
    ):
        super().__init__(z_dim, data_shape, "normal")
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if w_dim < 1 or mapping_layers < 1 or not mapping_lr_mul > 0:
            raise ConfigError(
                "model.w_dim and mapping_layers must be >= 1 and mapping_lr_mul > 0, got "
                f"{w_dim}, {mapping_layers}, {mapping_lr_mul}"
            )
        if not 0.0 <= style_mixing_prob <= 1.0:
            raise ConfigError(f"model.style_mixing_prob must be in [0, 1], got {style_mixing_prob}")
        if not 0.0 <= w_avg_beta < 1.0:
            raise ConfigError(f"model.w_avg_beta must be in [0, 1), got {w_avg_beta}")
        if truncation_cutoff is not None and truncation_cutoff < 1:
            raise ConfigError(
                f"model.truncation_cutoff must be >= 1 or null (all layers), got {truncation_cutoff}"
            )
        channels, res, _ = self.data_shape
        self.resolution, self.w_dim = res, int(w_dim)
        self.num_ws = 2 * base.log2_int(res) - 2  # two style layers per resolution 4 ... res
        self.style_mixing_prob, self.w_avg_beta = float(style_mixing_prob), float(w_avg_beta)
        self.truncation_cutoff = truncation_cutoff
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul)
        self.synthesis = SynthesisNetwork(res, channels, w_dim, _channels(channel_base, width))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def sample_z(self, n, *, device="cpu", generator=None, truncation=None) -> torch.Tensor:
        if truncation is not None:
            raise ConfigError(
                "StyleGAN truncates in W, not Z: pass truncation to G(z, truncation=psi)"
            )
        return super().sample_z(n, device=device, generator=generator)

    def truncate(self, ws: torch.Tensor, psi: float) -> torch.Tensor:
        """Eq. 3 on the style layers below ``truncation_cutoff`` (all if None)."""
        cut = (
            self.num_ws
            if self.truncation_cutoff is None
            else min(self.truncation_cutoff, self.num_ws)
        )
        head = truncate_w(ws[:, :cut], self.w_avg, psi)
        return torch.cat([head, ws[:, cut:]], dim=1)

    def mixing_ranges(self) -> dict[str, tuple[int, int]]:
        """Style layers [start, stop) that source B sets in each row group of the
        paper's Fig. 3: coarse 4^2-8^2, middle 16^2-32^2, fine 64^2 and up. At 32 px
        there is no 64^2, so "middle" is 16^2 and "fine" 32^2."""
        first = {2**k: 2 * (k - 2) for k in range(2, base.log2_int(self.resolution) + 1)}
        split = first[64] if self.resolution >= 64 else first[self.resolution]
        return {
            "coarse": (0, first[16]),
            "middle": (first[16], split),
            "fine": (split, self.num_ws),
        }

    def figure(self, name: str, settings, *, device="cpu", generator=None):
        """``ganrun sample mixing=true``: the style-mixing grid of Fig. 3
        (``style_mixing_grid`` with ``settings.mixing_columns`` / ``mixing_rows`` /
        ``truncation``); other figures are the base class's (none)."""
        if name != "mixing":
            return super().figure(name, settings, device=device, generator=generator)
        return style_mixing_grid(
            self, settings.mixing_columns, settings.mixing_rows, device=device,
            generator=generator, truncation=settings.truncation,
        )  # fmt: skip

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation: float | None = None,
        noise: str = "random",
    ) -> torch.Tensor:
        w = self.mapping(z)
        if self.training:
            with torch.no_grad():  # the reference code's dlatent_avg, updated per minibatch
                # (in fp32: under autocast w may be bf16/fp16 while the buffer is not)
                self.w_avg.lerp_(w.detach().mean(0).to(self.w_avg.dtype), 1.0 - self.w_avg_beta)
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        if self.training and self.style_mixing_prob > 0:
            if float(torch.rand(())) < self.style_mixing_prob:
                cut = int(torch.randint(1, self.num_ws, ()))
                w2 = self.mapping(self.sample_z(z.shape[0], device=z.device))
                tail = w2.unsqueeze(1).expand(-1, self.num_ws - cut, -1)
                ws = torch.cat([ws[:, :cut], tail], dim=1)
        if truncation is not None:
            ws = self.truncate(ws, truncation)
        x = self.synthesis(ws, noise)
        return x if self.training else x.clamp(-1.0, 1.0)


class Discriminator(base.Discriminator):
    RESOLUTIONS = (32, 64, 128)
    IMAGES_ONLY = True

    def __init__(
        self,
        data_shape,
        width: int = 512,
        channel_base: int = 16384,
        mbstd_group_size: int = 4,
        mbstd_features: int = 1,
    ):
        super().__init__(data_shape)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        nf = _channels(channel_base, width)
        if mbstd_group_size < 1 or mbstd_features < 1 or nf(4) % mbstd_features:
            raise ConfigError(
                "model.mbstd_group_size and mbstd_features must be >= 1 and mbstd_features "
                f"must divide D's 4x4 channels ({nf(4)}); got {mbstd_group_size}, {mbstd_features}"
            )
        channels, res, _ = self.data_shape
        self.mbstd_group_size, self.mbstd_features = int(mbstd_group_size), int(mbstd_features)
        self.from_rgb = EqualConv2d(channels, nf(res), 1)
        blocks: list[nn.Module] = []
        side = res
        while side > 4:
            blocks.append(_DownBlock(nf(side), nf(side // 2)))
            side //= 2
        self.blocks = nn.Sequential(*blocks)
        self.conv = EqualConv2d(nf(4) + mbstd_features, nf(4), 3)
        self.fc = EqualLinear(nf(4) * 16, nf(2))
        self.out = EqualLinear(nf(2), 1, gain=1.0)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = F.leaky_relu(self.from_rgb(x), 0.2)
        h = self.blocks(h)
        h = minibatch_stddev(h, self.mbstd_group_size, self.mbstd_features)
        h = F.leaky_relu(self.conv(h), 0.2)
        f = F.leaky_relu(self.fc(h.flatten(1)), 0.2)
        return self.out(f).squeeze(1), f


class _DownBlock(nn.Module):
    """conv3x3 - LReLU - blur - conv3x3 - 2x average pool - LReLU (ProGAN/StyleGAN D)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = EqualConv2d(cin, cin, 3)
        self.blur = Blur()
        self.conv1 = EqualConv2d(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(x), 0.2)
        x = F.avg_pool2d(self.conv1(self.blur(x)), 2)
        return F.leaky_relu(x, 0.2)


# --------------------------------------------------------------------------- pictures
@torch.no_grad()
def style_mixing_grid(
    G: Generator,
    columns: int = 5,
    rows_per_group: int = 2,
    *,
    device="cpu",
    generator: torch.Generator | None = None,
    truncation: float | None = None,
) -> tuple[torch.Tensor, int]:
    """The layout of StyleGAN's Fig. 3, as (images, images per row): a top row of
    ``columns`` source-A images (after a blank corner), then for each of the coarse,
    middle and fine groups ``rows_per_group`` rows that start with a source-B image
    and show each A with B's styles at that group's layers. Noise is held fixed
    (``noise="const"``) so only the styles differ between cells."""
    za = G.sample_z(columns, device=device, generator=generator)
    ranges = G.mixing_ranges()
    zb = G.sample_z(len(ranges) * rows_per_group, device=device, generator=generator)
    wsa = G.mapping(za).unsqueeze(1).repeat(1, G.num_ws, 1)
    wsb = G.mapping(zb).unsqueeze(1).repeat(1, G.num_ws, 1)
    if truncation is not None:
        wsa, wsb = G.truncate(wsa, truncation), G.truncate(wsb, truncation)
    img_a, img_b = G.synthesis(wsa, "const"), G.synthesis(wsb, "const")
    cells = [torch.ones_like(img_a[:1]), img_a]  # blank (white) corner, then the A row
    for g, (start, stop) in enumerate(ranges.values()):
        for r in range(rows_per_group):
            b = g * rows_per_group + r
            ws = wsa.clone()
            ws[:, start:stop] = wsb[b : b + 1, start:stop]
            cells += [img_b[b : b + 1], G.synthesis(ws, "const")]
    return torch.cat(cells).clamp(-1.0, 1.0), columns + 1

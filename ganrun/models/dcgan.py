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

``pack=m`` makes D a PacGAN discriminator (Lin et al. 2018): it judges m samples
concatenated along channels (images) or features (points), so only its input
layer widens (ganrun/models/packing.py).

G's ``norm`` is ``batch`` (the paper) or ``virtual_batch``: virtual batch
normalization (Salimans et al. 2016, Sec. 3.4; ganrun/models/vbn.py) with a
fixed reference batch of ``reference_size`` latents drawn from ``reference_seed``.

D's ``norm`` picks D's normalization: ``batch`` (the paper), ``layer`` or ``none``
(critics under a gradient penalty: WGAN-GP, Gulrajani et al. 2017, Sec. 4).
"""

from __future__ import annotations

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base, vbn
from ganrun.models.minibatch import MinibatchHead, check_minibatch_features
from ganrun.models.packing import check_pack, pack_samples

# resolution -> (side of the first feature map, number of stride-2 stages)
_LAYOUT = {28: (7, 2), 32: (4, 3), 64: (4, 4)}
D_NORMS = ("batch", "layer", "none")


def _d_norm(kind: str, channels: int, image: bool) -> nn.Module:
    """D's normalization. ``layer`` normalizes each sample over all of (C, H, W)
    with a per-channel gain and shift, as the WGAN-GP code's Layernorm
    (Gulrajani et al. 2017, Sec. 4: a critic under a gradient penalty must not
    use batch norm, which couples the samples of a batch)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels) if image else nn.BatchNorm1d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels) if image else nn.LayerNorm(channels)
    return nn.Identity()


class Generator(base.Generator):
    RESOLUTIONS = tuple(_LAYOUT)

    def __init__(
        self,
        data_shape,
        z_dim: int = 100,
        width: int = 64,
        z_dist: str = "uniform",
        norm: str = "batch",
        reference_size: int = 64,
        reference_seed: int = 0,
    ):
        super().__init__(z_dim, data_shape, z_dist)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1:
            raise ConfigError(f"model.width must be >= 1, got {width}")
        vbn.check_norm(norm, reference_size)

        def bn(features: int, image: bool) -> nn.Module:
            return vbn.norm_layer(norm, features, reference_size, image)

        if len(self.data_shape) == 1:
            h = 4 * width
            self.net = nn.Sequential(
                nn.Linear(z_dim, h, bias=False), bn(h, False), nn.ReLU(True),
                nn.Linear(h, h, bias=False), bn(h, False), nn.ReLU(True),
                nn.Linear(h, self.data_shape[0]),
            )  # fmt: skip
        else:
            channels, res, _ = self.data_shape
            start, stages = _LAYOUT[res]
            ch = width * 2 ** (stages - 1)
            layers: list[nn.Module] = [
                # project z (as a 1x1 map) to start x start x ch: the paper's first
                # "project and reshape" step as a convolution
                nn.ConvTranspose2d(z_dim, ch, start, 1, 0, bias=False),
                bn(ch, True),
                nn.ReLU(True),
            ]
            for _ in range(stages - 1):
                layers += [
                    nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                    bn(ch // 2, True),
                    nn.ReLU(True),
                ]
                ch //= 2
            layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
            self.net = nn.Sequential(*layers)
        base.dcgan_init(self)
        # Salimans et al. 2016, Sec. 3.4: the fixed reference batch (ganrun/models/vbn.py)
        self.reference = (
            vbn.make_reference(self, reference_size, reference_seed)
            if norm == "virtual_batch"
            else None
        )

    def _net(self, z: torch.Tensor) -> torch.Tensor:
        if len(self.data_shape) == 1:
            return self.net(z)
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return vbn.run(self.reference, self._net, z)


class Discriminator(base.Discriminator):
    RESOLUTIONS = tuple(_LAYOUT)

    def __init__(
        self,
        data_shape,
        width: int = 64,
        leak: float = 0.2,
        pack: int = 1,
        norm: str = "batch",
        minibatch_features: int = 0,
        minibatch_mean: bool = False,
    ):
        super().__init__(data_shape)
        # Salimans et al. 2016, Sec. 3.2: minibatch discrimination before the head
        minibatch = check_minibatch_features(minibatch_features, minibatch_mean)
        self.pack = check_pack(pack)
        base.check_choice("model.D.norm", norm, D_NORMS)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1:
            raise ConfigError(f"model.width must be >= 1, got {width}")
        # Batch norm's shift makes a conv's bias redundant. Without batch norm every conv
        # keeps its bias, as the WGAN-GP authors' critics do (tflib Conv2D, biases=True):
        # with none, a critic of bias-free convs, leaky ReLUs and layer norm is positively
        # homogeneous up to its first layer norm, so D(a*x) = D(x) for every a > 0 and it
        # cannot see an image's contrast (at 32 px WGAN-GP's G then drew grey images).
        bias = norm != "batch"
        if len(self.data_shape) == 1:
            h = 4 * width
            self.trunk = nn.Sequential(
                nn.Linear(self.data_shape[0] * self.pack, h), nn.LeakyReLU(leak, True),
                nn.Linear(h, h, bias=bias), _d_norm(norm, h, image=False), nn.LeakyReLU(leak, True),
            )  # fmt: skip
            self.head = (
                MinibatchHead(h, minibatch, mean=minibatch_mean) if minibatch else nn.Linear(h, 1)
            )
            base.dcgan_init(self)
            return
        channels, res, _ = self.data_shape
        start, stages = _LAYOUT[res]
        ch = width
        layers: list[nn.Module] = [
            nn.Conv2d(channels * self.pack, ch, 4, 2, 1, bias=bias),
            nn.LeakyReLU(leak, True),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=bias),
                _d_norm(norm, ch * 2, image=True),
                nn.LeakyReLU(leak, True),
            ]
            ch *= 2
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(ch, 1, start, 1, 0, bias=False)  # one logit from the last feature map
        if minibatch:
            self.head = MinibatchHead(ch * start * start, minibatch, mean=minibatch_mean)
        base.dcgan_init(self)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = self.trunk(pack_samples(x, self.pack))
        return self.head(h).view(h.shape[0]), h.flatten(1)

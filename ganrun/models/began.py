"""BEGAN — Berthelot, Schumm & Metz 2017, "BEGAN: Boundary Equilibrium Generative
Adversarial Networks" (arXiv:1703.10717).

D is an auto-encoder; L(v) = |v - D(v)|, the L1 reconstruction error (Sec. 3.1, eta = 1),
here the mean over the pixels of each sample, so ``D(x)`` returns one loss per sample
(B,). Objective (Sec. 3.4):

    L_D = L(x) - k_t L(G(z_D))                              for theta_D
    L_G = L(G(z_G))                                         for theta_G
    k_{t+1} = k_t + lambda_k (gamma L(x) - L(G(z_G)))       for each training step t

with k_0 = 0 and k clipped to [0, 1] (Sec. 3.4: "k_t in [0, 1]"), gamma the diversity
ratio E[L(G(z))] / E[L(x)] (Eq. 3 of Sec. 3.3), lambda_k = 0.001 (Sec. 3.4). The
convergence measure (Sec. 3.4.1) M_global = L(x) + |gamma L(x) - L(G(z_G))|.
``EquilibriumLoss`` (``loss=began``) holds k_t as training state: the Objective calls
``observe_d`` (which keeps L(x) of D's step) and ``observe_g`` (which updates k_t
from it and L(G(z_G)) of G's step) and checkpoints ``state_dict``; k_t and M_global
are logged as ``began/k_t`` and ``began/M_global``.

Networks (Sec. 3.5, Fig. 1): 3x3 convolutions with ELUs, two per resolution;
the encoder's filters grow linearly (n, 2n, 3n, ...) with each down-sampling, done by
stride-2 convolutions; fully connected maps without non-linearity to and from the
embedding h (N_h = 64); the decoder starts from 8x8xn and up-samples by nearest
neighbour; G has the decoder's architecture (its own weights) with z ~ U(-1, 1)^{N_z},
N_z = 64. Weights are Glorot-uniform with zero biases, the initializers of the
reference code (carpedm20/BEGAN-tensorflow, TF-slim's defaults; the paper names none):
under PyTorch's default init (a third of that variance) the ~18 layers of D's
auto-encoder shrink the input's trace to nothing (the reconstruction's spread over a
batch of digits 1.4e-5 at n = 16, vs 0.033 with Glorot), so D reconstructs one mean
image whatever it is given and G collapsed onto it. (With Glorot init D auto-encodes
the digits, but `experiment=began_mnist` still collapses for another reason: k_t stays
at 0, docs/RESULTS.md.) The last conv of G and of D's decoder is linear (the paper
applies no output non-linearity); G's samples are clamped to [-1, 1] in eval mode, as
the model contract promises. Sizes: 64 px down-samples 64-32-16-8 as the paper (constant 8x8
at the boundary); 32 px 32-16-8; 28 px (MNIST, ganrun's variant) 28-14-7, a 7x7
boundary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import ConfigError
from ganrun.losses import Loss
from ganrun.models import base

# resolution -> side of the maps at the encoder/decoder boundary
_BOUNDARY = {28: 7, 32: 8, 64: 8}


def _blocks(res: int) -> int:
    """Number of resolutions (each two convs): log2(res / boundary) + 1."""
    n, side = 1, _BOUNDARY[res]
    while side < res:
        side, n = side * 2, n + 1
    return n


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


class Decoder(nn.Module):
    """h -> FC (linear) -> side x side x n -> [conv-ELU, conv-ELU, nearest x2] ... -> conv."""

    def __init__(self, h_dim: int, width: int, channels: int, side: int, blocks: int):
        super().__init__()
        self.width, self.side = width, side
        self.fc = nn.Linear(h_dim, width * side * side)
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers += [_conv(width, width), nn.ELU(), _conv(width, width), nn.ELU()]
            if i < blocks - 1:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers.append(_conv(width, channels))
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(h).view(h.shape[0], self.width, self.side, self.side))


class Generator(base.Generator):
    RESOLUTIONS = tuple(_BOUNDARY)
    IMAGES_ONLY = True

    def __init__(self, data_shape, z_dim: int = 64, width: int = 128, z_dist: str = "uniform"):
        super().__init__(z_dim, data_shape, z_dist)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1:
            raise ConfigError(f"model.width must be >= 1, got {width}")
        channels, res, _ = self.data_shape
        self.decoder = Decoder(z_dim, width, channels, _BOUNDARY[res], _blocks(res))
        base.xavier_init(self)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.decoder(z)
        return x if self.training else x.clamp(-1.0, 1.0)


class Discriminator(base.Discriminator):
    """The auto-encoder D: ``D(x)`` is the per-sample L1 reconstruction loss L(x) (B,)."""

    RESOLUTIONS = tuple(_BOUNDARY)
    IMAGES_ONLY = True
    OUTPUT = "energy"  # an auto-encoder loss, low on data; only energy losses fit

    def __init__(self, data_shape, width: int = 128, h_dim: int = 64):
        super().__init__(data_shape)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1 or h_dim < 1:
            raise ConfigError(f"model.width and model.h_dim must be >= 1, got {width}, {h_dim}")
        channels, res, _ = self.data_shape
        side, blocks = _BOUNDARY[res], _blocks(res)
        layers: list[nn.Module] = [_conv(channels, width), nn.ELU()]
        for i in range(blocks):
            ch = width * (i + 1)  # filters grow linearly: n, 2n, 3n, ...
            layers += [_conv(ch, ch), nn.ELU(), _conv(ch, ch), nn.ELU()]
            if i < blocks - 1:  # sub-sampling: a stride-2 conv to the next block's filters
                layers += [_conv(ch, width * (i + 2), stride=2), nn.ELU()]
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.to_h = nn.Linear(width * blocks * side * side, h_dim)  # no non-linearity
        self.decoder = Decoder(h_dim, width, channels, side, blocks)
        base.xavier_init(self)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D's reconstruction of x, the embedding h)."""
        h = self.to_h(self.encoder(x))
        return self.decoder(h), h

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        recon, h = self.reconstruct(x)
        return l1_loss(x, recon), h


def l1_loss(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """L(v) = |v - D(v)| per sample: the mean absolute error over its pixels (B,)."""
    return F.l1_loss(recon.float(), x.float(), reduction="none").flatten(1).mean(dim=1)


def k_update(k: torch.Tensor, loss_real, loss_fake, gamma: float, lambda_k: float):
    """k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_G))), 0, 1) (Sec. 3.4)."""
    return (k + lambda_k * (gamma * loss_real - loss_fake)).clamp(0.0, 1.0)


def convergence_measure(loss_real, loss_fake, gamma: float):
    """M_global = L(x) + |gamma L(x) - L(G(z_G))| (Sec. 3.4.1)."""
    return loss_real + abs(gamma * loss_real - loss_fake)


class EquilibriumLoss(Loss):
    """BEGAN's objective with its equilibrium control variable k_t (see the module doc).
    ``d``/``g`` read k_t; only ``observe_g`` changes it, once per generator step."""

    name = "began"
    output = "energy"

    def __init__(self, gamma: float = 0.5, lambda_k: float = 0.001, k_init: float = 0.0):
        if not 0.0 < gamma <= 1.0:
            raise ConfigError(f"loss.gamma (the diversity ratio) must be in (0, 1], got {gamma}")
        if not lambda_k > 0:
            raise ConfigError(f"loss.lambda_k must be > 0, got {lambda_k}")
        if not 0.0 <= k_init <= 1.0:
            raise ConfigError(f"loss.k_init must be in [0, 1], got {k_init}")
        self.gamma, self.lambda_k = float(gamma), float(lambda_k)
        self.k = torch.tensor(float(k_init))  # float32; on the training device once used
        self.loss_real: torch.Tensor | None = None  # L(x) of the latest D step

    def _k(self, like: torch.Tensor) -> torch.Tensor:
        if self.k.device != like.device:
            self.k = self.k.to(like.device)
        return self.k

    def d(self, real, fake):
        return real.mean() - self._k(real) * fake.mean()

    def g(self, fake):
        return fake.mean()

    def observe_d(self, real, fake):
        self.loss_real = real.float().mean()
        return {"began/k_t": self._k(real).clone()}

    def observe_g(self, fake):
        if self.loss_real is None:  # no D step yet (cannot happen in the loop)
            return {}
        loss_fake = fake.float().mean()
        measure = convergence_measure(self.loss_real, loss_fake, self.gamma)
        self.k = k_update(self._k(fake), self.loss_real, loss_fake, self.gamma, self.lambda_k)
        return {"began/M_global": measure}

    def state_dict(self) -> dict:
        return {"k": self.k.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.k = state["k"].detach().clone().float()

    def __repr__(self) -> str:
        return f"EquilibriumLoss(gamma={self.gamma}, lambda_k={self.lambda_k})"

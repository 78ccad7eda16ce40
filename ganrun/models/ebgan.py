"""EBGAN — Zhao, Mathieu & LeCun 2017, "Energy-based Generative Adversarial Network"
(ICLR 2017, arXiv:1609.03126).

D is an energy function, here an auto-encoder whose energy is its reconstruction
error (Sec. 2.3): D(x) = ||Dec(Enc(x)) - x||, the Euclidean norm of each sample's
residual (``energy="norm"``, the default), so ``D(x)`` returns one non-negative
energy per sample (B,) where other discriminators return a logit. ``energy="mse"``
is the per-pixel mean squared error that many public EBGAN implementations use
instead (e.g. github.com/kozistr/Awesome-GANs, EBGAN/readme.md); it is a deviation
from the paper's text and shrinks the energies by orders of magnitude, so a margin
tuned for the norm (m = 10) does not carry over to it. Objective (Sec. 2.1):

    L_D(x, z) = D(x) + [m - D(G(z))]^+        (Eq. 1)
    L_G(z)    = D(G(z))                       (Eq. 2)

(``MarginLoss``, ``loss=ebgan``), averaged over the batch. EBGAN-PT (Sec. 2.4) adds the
"pulling-away term" on the encoder's representation S of the generated batch to G's
loss (``PullingAway``, ``regularizer=pulling_away``):

    f_PT(S) = 1 / (N (N - 1)) sum_i sum_{j != i} (S_i^T S_j / (||S_i|| ||S_j||))^2   (Sec. 2.4)

weighted 0.1 (App. F: "the cost weight on the PT is set to 0.1"). The paper uses the
PT in G's loss only, not in D's (Sec. 2.4).

Settings the paper states (Sec. 4.1, MNIST grid search): Adam with learning rate
0.001 for both G and D, margin m = 10 "not being tuned" (App. F, Fig. 9, shows
m in {1, 2, 4, 6, 8, 12, 16, 32} for one fully connected setting: nLayerG = 5,
nLayerD = 2, sizeG = 1600, sizeD = 1024, Adam, lr 0.001).

Networks. G is DCGAN's (ganrun.models.dcgan.Generator). The paper's MNIST models are
fully connected (Sec. 4.1; Table 1's grid); its 64 px LSUN/CelebA models are
convolutional, with their settings in App. C, which was NOT available to check here.
ganrun's D is a convolutional auto-encoder (not verified against App. C): strided
4x4 convolutions w-2w-4w down to an 8x8 code, transposed ones back, a linear output,
BatchNorm on the hidden layers, leaky ReLU 0.2. Sizes: 64 px and 32 px use three
stages (codes 8x8 and 4x4); 28 px (MNIST) uses two, w-2w to a 7x7 code (ganrun's
MNIST-size variant, a deviation from the paper's fully connected MNIST networks).
``forward_features`` returns (energy, flattened code): the code is what the
pulling-away term reads.
"""

from __future__ import annotations

import torch
from torch import nn

from ganrun.errors import ConfigError
from ganrun.losses import Loss
from ganrun.models import base
from ganrun.objective import Batch, Regularizer

# resolution -> number of stride-2 stages of the encoder (and the decoder)
_STAGES = {28: 2, 32: 3, 64: 3}


ENERGIES = ("norm", "mse")


def reconstruction_energy(x: torch.Tensor, recon: torch.Tensor, kind: str = "norm") -> torch.Tensor:
    """EBGAN's energy D(x) per sample (B,): ``norm`` is ||Dec(Enc(x)) - x||, the
    Euclidean norm of the residual (Sec. 2.3); ``mse`` the per-pixel mean squared error."""
    residual = (recon.float() - x.float()).flatten(1)
    if kind == "mse":
        return residual.pow(2).mean(dim=1)
    return torch.linalg.vector_norm(residual, dim=1)  # its gradient at 0 is 0, not nan


class Discriminator(base.Discriminator):
    """An auto-encoder D: ``D(x)`` is the per-sample reconstruction energy (B,):
    ``energy="norm"`` the paper's ||Dec(Enc(x)) - x|| (Sec. 2.3), ``"mse"`` the mean
    squared error of common implementations."""

    RESOLUTIONS = tuple(_STAGES)
    IMAGES_ONLY = True
    OUTPUT = "energy"  # D's output is an energy, low on data; only energy losses fit

    def __init__(self, data_shape, width: int = 64, leak: float = 0.2, energy: str = "norm"):
        super().__init__(data_shape)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1:
            raise ConfigError(f"model.width must be >= 1, got {width}")
        base.check_choice("model.D.energy", energy, ENERGIES)
        self.energy = energy
        channels, res, _ = self.data_shape
        stages = _STAGES[res]
        enc: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(leak, True)]
        ch = width
        for _ in range(stages - 1):
            enc += [
                nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False),
                nn.BatchNorm2d(2 * ch),
                nn.LeakyReLU(leak, True),
            ]
            ch *= 2
        dec: list[nn.Module] = []
        for _ in range(stages - 1):
            dec += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.LeakyReLU(leak, True),
            ]
            ch //= 2
        dec.append(nn.ConvTranspose2d(ch, channels, 4, 2, 1))  # linear: reconstructs x
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        base.dcgan_init(self)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Dec(Enc(x)), Enc(x))."""
        code = self.encoder(x)
        return self.decoder(code), code

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        recon, code = self.reconstruct(x)
        return reconstruction_energy(x, recon, self.energy), code.flatten(1)


class MarginLoss(Loss):
    """EBGAN's objective on energies (Zhao et al. 2017, Eqs. 1-2):
    D: E[D(x)] + E[max(0, m - D(G(z)))];  G: E[D(G(z))]."""

    name = "ebgan"
    output = "energy"

    def __init__(self, margin: float = 10.0):
        if not margin > 0:
            raise ConfigError(f"loss.margin must be > 0, got {margin}")
        self.margin = float(margin)

    def d(self, real, fake):
        return real.mean() + torch.relu(self.margin - fake).mean()

    def g(self, fake):
        return fake.mean()

    def __repr__(self) -> str:
        return f"MarginLoss(margin={self.margin})"


def pulling_away(s: torch.Tensor) -> torch.Tensor:
    """f_PT of Sec. 2.4: the mean squared cosine similarity over the ordered pairs i != j
    of the rows of ``s`` (N, F). 1 for N identical rows, 0 for N orthogonal ones."""
    n = s.shape[0]
    if n < 2:
        return s.new_zeros(())
    unit = s.float() / s.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos2 = (unit @ unit.T).pow(2)
    return (cos2.sum() - cos2.diagonal().sum()) / (n * (n - 1))


class PullingAway(Regularizer):
    """EBGAN-PT's repelling regularizer (Zhao et al. 2017, Sec. 2.4): weight *
    f_PT(S) added to G's loss, S the encoder's representation of the generated batch
    (D.forward_features); weight 0.1 as in the paper (App. F)."""

    name = "pulling_away"
    needs_features = True
    first_order = True  # no gradient of a gradient: compiled networks may run it

    def __init__(self, weight: float = 0.1):
        if not weight > 0:
            raise ConfigError(f"regularizer.pulling_away.weight must be > 0, got {weight}")
        self.weight = float(weight)

    def g_term(self, batch: Batch) -> torch.Tensor:
        return self.weight * pulling_away(batch.f_fake)

"""InfoGAN — Chen et al. 2016, "InfoGAN: Interpretable Representation Learning
by Information Maximizing Generative Adversarial Nets" (arXiv:1606.03657).

G's input is [z, c]: incompressible noise z and latent codes c. For MNIST
(Sec. 7, App. C.1): 62 noise variables, one 10-way categorical code and two
continuous codes, all uniform (z and the continuous codes on [-1, 1]).
``G.sample_z`` returns the concatenated vector [z, one-hot codes..., continuous
codes]; ``G.categorical``/``G.continuous`` and ``G.split_latent`` give its layout.

Networks (App. C.1, Table 1, MNIST):

* D/Q trunk: 4x4 conv 64 stride 2, lReLU; 4x4 conv 128 stride 2, BN, lReLU;
  FC 1024, BN, lReLU. D: FC -> 1 logit. Q: FC 128, BN, lReLU, FC -> code
  parameters (softmax logits per categorical code; a Gaussian mean, and with
  ``learn_std`` a log-std, per continuous code). Q lives in D, so it is trained
  by D's optimizer and stored with D.
* G: FC 1024, BN, ReLU; FC 7x7x128, BN, ReLU; 4x4 up-conv 64 stride 2, BN,
  ReLU; 4x4 up-conv 1 channel stride 2, tanh.

G's ``norm=virtual_batch`` swaps its BatchNorms for virtual batch norm (Salimans
et al. 2016, Sec. 3.4; ganrun/models/vbn.py), ganrun's option; the reference
latents include codes drawn as ``sample_z`` draws them.

The ``info`` regularizer (``MutualInformation``) is lambda times the negative
variational lower bound L_I(G, Q) of Eq. 4 (up to the constant entropy H(c)):
cross-entropy for categorical codes, Gaussian negative log-likelihood for
continuous ones. It is added to D's loss (training Q and the shared trunk on
Q(trunk(G(z, c).detach()))) and to G's loss (through G, with D's weights frozen
by the loop), as Eq. 5's min over G and Q.

Settings (App. C and the authors' code, github.com/openai/InfoGAN): Adam with
lr 2e-4 for D and 1e-3 for G, beta1 0.5; lambda = 1; lReLU slope 0.1 (App. C);
the code's batch size 128. Resolutions: 28 (the paper) and 32 (the same
network with 8x8 instead of 7x7 maps; ganrun's addition).

Deviations: Q's continuous codes use a fixed unit std by default, as the
authors' MNIST code (``Uniform(1, fix_std=True)``); the paper (Sec. 6) says Q
outputs mean and std, which ``learn_std: true`` gives. lambda = 1 for the
continuous codes too, as in that code; the paper notes that a smaller lambda
is "typically used" for continuous codes without a value for MNIST. G's output
is tanh (data in [-1, 1]) instead of the code's sigmoid (Bernoulli means).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base, vbn
from ganrun.objective import Batch, Regularizer

_START = {28: 7, 32: 8}  # side of G's first feature map / D's last: resolution / 4


def _check_codes(categorical, continuous: int) -> tuple[tuple[int, ...], int]:
    cats = tuple(int(k) for k in categorical)
    if any(k < 2 for k in cats):
        raise ConfigError(f"model.categorical: each code needs >= 2 categories, got {list(cats)}")
    if continuous < 0:
        raise ConfigError(f"model.continuous must be >= 0, got {continuous}")
    if not cats and continuous == 0:
        raise ConfigError(
            "infogan needs at least one latent code (model.categorical or continuous)"
        )
    return cats, int(continuous)


class Generator(base.Generator):
    RESOLUTIONS = tuple(_START)
    IMAGES_ONLY = True

    def __init__(
        self,
        data_shape,
        noise_dim: int = 62,
        categorical: list[int] = (10,),
        continuous: int = 2,
        width: int = 64,
        fc_width: int = 1024,
        z_dist: str = "uniform",
        norm: str = "batch",
        reference_size: int = 64,
        reference_seed: int = 0,
    ):
        cats, cont = _check_codes(categorical, continuous)
        if noise_dim < 1:
            raise ConfigError(f"model.noise_dim must be >= 1, got {noise_dim}")
        super().__init__(noise_dim + sum(cats) + cont, data_shape, z_dist)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        if width < 1 or fc_width < 1:
            raise ConfigError(f"model.width and fc_width must be >= 1, got {width}, {fc_width}")
        vbn.check_norm(norm, reference_size)
        self.noise_dim, self.categorical, self.continuous = int(noise_dim), cats, cont
        channels, res, _ = self.data_shape
        self.start = _START[res]

        def bn(features: int, image: bool) -> nn.Module:  # model.G.norm: batch | virtual_batch
            return vbn.norm_layer(norm, features, reference_size, image)

        self.fc = nn.Sequential(
            nn.Linear(self.z_dim, fc_width, bias=False), bn(fc_width, False), nn.ReLU(True),
            nn.Linear(fc_width, 2 * width * self.start**2, bias=False),
            bn(2 * width * self.start**2, False), nn.ReLU(True),
        )  # fmt: skip
        self.conv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
            bn(width, True),
            nn.ReLU(True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
            nn.Tanh(),
        )
        base.dcgan_init(self)  # the authors' code: N(0, 0.02) weights, N(1, 0.02) BN scales
        # virtual batch norm's reference latents (codes included), Salimans et al. 2016, Sec. 3.4
        self.reference = (
            vbn.make_reference(self, reference_size, reference_seed)
            if norm == "virtual_batch"
            else None
        )

    # -- the latent layout: [noise | one-hot categorical codes | continuous codes]
    def codes(self) -> list[tuple[str, int]]:
        """The codes in order: ("categorical", k) per categorical code, then
        ("continuous", 1) per continuous dimension. ``code=i`` indexes this list."""
        return [("categorical", k) for k in self.categorical] + [
            ("continuous", 1)
        ] * self.continuous

    def split_latent(self, z: torch.Tensor):
        """(noise (B, noise_dim), [one-hot (B, k) per categorical code], continuous (B, n))."""
        noise, rest = z[:, : self.noise_dim], z[:, self.noise_dim :]
        one_hots = list(rest[:, : sum(self.categorical)].split(list(self.categorical), dim=1))
        return noise, one_hots, rest[:, sum(self.categorical) :]

    def set_code(self, z: torch.Tensor, code: int, value: float) -> torch.Tensor:
        """A copy of z with code ``code`` set to ``value`` (a category index for
        a categorical code, a number for a continuous one) in every row."""
        kinds = self.codes()
        if not 0 <= code < len(kinds):
            raise ConfigError(
                f"code={code} is not a latent code of this model; choose 0..{len(kinds) - 1}"
            )
        z = z.clone()
        if code < len(self.categorical):
            k = self.categorical[code]
            if not (0 <= value < k and float(value).is_integer()):
                raise ConfigError(f"categorical code {code} takes an index 0..{k - 1}, got {value}")
            start = self.noise_dim + sum(self.categorical[:code])
            z[:, start : start + k] = 0.0
            z[:, start + int(value)] = 1.0
        else:
            z[:, self.noise_dim + sum(self.categorical) + code - len(self.categorical)] = value
        return z

    def sample_z(self, n, *, device="cpu", generator=None, truncation=None) -> torch.Tensor:
        noise = base.sample_latent(
            n,
            self.noise_dim,
            self.z_dist,
            device=device,
            generator=generator,
            truncation=truncation,
        )
        parts = [noise]
        for k in self.categorical:  # uniform over the k categories
            u = base.sample_latent(n, 1, "uniform", device=device, generator=generator)
            idx = ((u[:, 0] + 1) / 2 * k).floor().long().clamp_(0, k - 1)
            parts.append(F.one_hot(idx, k).to(noise.dtype))
        if self.continuous:
            parts.append(
                base.sample_latent(
                    n, self.continuous, "uniform", device=device, generator=generator
                )
            )
        return torch.cat(parts, dim=1)

    def _net(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.fc(z).view(z.shape[0], -1, self.start, self.start))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return vbn.run(self.reference, self._net, z)


class Discriminator(base.Discriminator):
    RESOLUTIONS = tuple(_START)
    IMAGES_ONLY = True

    def __init__(
        self,
        data_shape,
        categorical: list[int] = (10,),
        continuous: int = 2,
        width: int = 64,
        fc_width: int = 1024,
        q_width: int = 128,
        leak: float = 0.1,
        learn_std: bool = False,
    ):
        super().__init__(data_shape)
        if (why := self.check_data(self.data_shape, 0)) is not None:
            raise ConfigError(why)
        cats, cont = _check_codes(categorical, continuous)
        if min(width, fc_width, q_width) < 1:
            raise ConfigError(
                f"model.width, fc_width and q_width must be >= 1, got {width}, {fc_width}, {q_width}"
            )
        self.categorical, self.continuous, self.learn_std = cats, cont, bool(learn_std)
        channels, res, _ = self.data_shape
        side = _START[res]
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(leak, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(leak, True),
            nn.Flatten(),
            nn.Linear(2 * width * side**2, fc_width, bias=False), nn.BatchNorm1d(fc_width),
            nn.LeakyReLU(leak, True),
        )  # fmt: skip
        self.head = nn.Linear(fc_width, 1)
        n_out = sum(cats) + cont * (2 if self.learn_std else 1)
        self.q = nn.Sequential(
            nn.Linear(fc_width, q_width, bias=False), nn.BatchNorm1d(q_width),
            nn.LeakyReLU(leak, True), nn.Linear(q_width, n_out),
        )  # fmt: skip
        base.dcgan_init(self)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = self.trunk(x)
        return self.head(h).view(x.shape[0]), h

    def q_posterior(self, features: torch.Tensor):
        """Q(c | x) from D's features: ([logits (B, k) per categorical code],
        continuous means (B, n), log-stds (B, n) or None for a fixed unit std)."""
        out = self.q(features)
        n_cat = sum(self.categorical)
        logits = list(out[:, :n_cat].split(list(self.categorical), dim=1))
        mean = out[:, n_cat : n_cat + self.continuous]
        log_std = out[:, n_cat + self.continuous :] if self.learn_std else None
        return logits, mean, log_std


# --------------------------------------------------------------------------- the MI term
def categorical_nll(logits: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """-E[log Q(c|x)] for a categorical code given as one-hot rows: the cross-entropy."""
    return F.cross_entropy(logits, one_hot.argmax(dim=1))


def gaussian_nll(
    c: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor | None = None
) -> torch.Tensor:
    """-E[log N(c; mean, std^2)], summed over the code dimensions, averaged over
    the batch; std = exp(log_std), or 1 when log_std is None."""
    if log_std is None:
        log_std = torch.zeros_like(mean)
    nll = 0.5 * math.log(2 * math.pi) + log_std + 0.5 * ((c - mean) * torch.exp(-log_std)) ** 2
    return nll.sum(dim=1).mean()


class MutualInformation(Regularizer):
    """lambda * (-L_I): InfoGAN's variational mutual-information term (Chen et
    al. 2016, Eqs. 4-5), minimized by Q and D's trunk (D phase) and by G (G phase)."""

    name = "info"
    needs_features = True
    first_order = True

    def __init__(self, categorical_weight: float = 1.0, continuous_weight: float = 1.0):
        for key, w in (
            ("categorical_weight", categorical_weight),
            ("continuous_weight", continuous_weight),
        ):
            if not w >= 0:
                raise ConfigError(f"regularizer.info.{key} must be >= 0, got {w}")
        self.categorical_weight = float(categorical_weight)
        self.continuous_weight = float(continuous_weight)

    def term(self, G, D, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if not (hasattr(G, "split_latent") and hasattr(D, "q_posterior")):
            raise ConfigError(
                "regularizer=info needs a model with latent codes and a Q head (model=infogan)"
            )
        _, one_hots, cont = G.split_latent(z)
        logits, mean, log_std = D.q_posterior(features)
        # in fp32 from autocast's bf16/fp16 Q outputs (trainer.precision)
        logits, mean = [lg.float() for lg in logits], mean.float()
        log_std = None if log_std is None else log_std.float()
        loss = features.new_zeros(())
        for lg, oh in zip(logits, one_hots):
            loss = loss + self.categorical_weight * categorical_nll(lg, oh)
        if cont.shape[1]:
            loss = loss + self.continuous_weight * gaussian_nll(cont, mean, log_std)
        return loss

    def d_term(self, batch: Batch) -> torch.Tensor:
        return self.term(batch.G, batch.D, batch.z, batch.f_fake)

    def g_term(self, batch: Batch) -> torch.Tensor:
        return self.term(batch.G, batch.D, batch.z, batch.f_fake)

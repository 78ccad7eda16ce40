"""Adversarial losses as small pure functions of D's logits.

Every loss is written as a quantity to *minimize*: ``d(real, fake)`` for D and
``g(fake)`` for G, where ``real`` and ``fake`` are D's logits (B,) on data and
on generated samples. Sigmoid-based losses use ``softplus`` for stability:
``log sigmoid(l) = -softplus(-l)`` and ``log(1 - sigmoid(l)) = -softplus(l)``.

Losses: ``Minimax``/``NonSaturating`` (Goodfellow et al. 2014), ``Wasserstein``
(Arjovsky et al. 2017), ``Hinge`` (Lim & Ye 2017; Miyato et al. 2018),
``LeastSquares`` (Mao et al. 2017) and ``FDivergence`` (Nowozin et al. 2016).
``output`` says how logs read D's output ("logit": report sigmoid(D); "score":
the raw value).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganrun.errors import ConfigError


def gan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))], Goodfellow et al. 2014, Eq. 1 (D ascends it; we descend the negation)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))): G's side of Eq. 1 (saturates when D rejects samples confidently)."""
    return -F.softplus(fake).mean()


def nonsaturating_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): Goodfellow et al. 2014, Sec. 3 ("maximize log D(G(z))")."""
    return F.softplus(-fake).mean()


class Loss:
    """A GAN loss: D's and G's objectives on logits. Subclasses set ``name``."""

    name = "loss"
    # How to read D's output in logs: "logit" -> report sigmoid(D) as D(x);
    # "score" -> report the raw critic value.
    output = "logit"
    # True when D's loss is the sigmoid cross-entropy -[log D(x) + log(1 - D(G(z)))]
    # on logits (one-sided label smoothing is defined for it)
    logistic = False

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ``d`` and ``g`` are pure (regularizers such as consensus or unrolled call them
    # again). A loss with training state (BEGAN's k_t) changes it only here: the
    # Objective calls ``observe_d`` once per D step and ``observe_g`` once per G step,
    # with D's detached outputs; what they return is logged with the phase's stats.
    def observe_d(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def observe_g(self, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def state_dict(self) -> dict:
        """Training state for checkpoints (tensors and plain types); {} = none."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Minimax(Loss):
    name = "minimax"
    logistic = True

    def d(self, real, fake):
        return gan_d_loss(real, fake)

    def g(self, fake):
        return minimax_g_loss(fake)


class NonSaturating(Loss):
    name = "nonsaturating"
    logistic = True

    def d(self, real, fake):
        return gan_d_loss(real, fake)

    def g(self, fake):
        return nonsaturating_g_loss(fake)


class Wasserstein(Loss):
    """WGAN, Arjovsky et al. 2017, Eq. 3 and Alg. 1: the critic maximizes
    E[f(x)] - E[f(G(z))]; G maximizes E[f(G(z))]. Needs a Lipschitz constraint
    (regularizer=weight_clip, gp or gp_one_sided, or spectral norm)."""

    name = "wasserstein"
    output = "score"

    def d(self, real, fake):
        return fake.mean() - real.mean()

    def g(self, fake):
        return -fake.mean()


class Hinge(Loss):
    """Hinge loss: Lim & Ye 2017; Miyato et al. 2018, Eq. 16; Zhang et al. 2018
    (SAGAN), Eq. 5. D: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G: -E[D(G(z))]."""

    name = "hinge"
    output = "score"

    def d(self, real, fake):
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def g(self, fake):
        return -fake.mean()


class LeastSquares(Loss):
    """LSGAN, Mao et al. 2017, Eq. 2 with the a-b-c coding:
    D: 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2];  G: 1/2 E[(D(G(z)) - c)^2].
    Defaults a=0, b=1, c=1 (their Eq. 9); a=-1, b=1, c=0 is their Eq. 8, under
    which the game minimizes the Pearson chi^2 divergence (b - c = 1, b - a = 2)."""

    name = "least_squares"
    output = "score"

    def __init__(self, a: float = 0.0, b: float = 1.0, c: float = 1.0):
        if a == b:
            raise ConfigError(
                f"loss.a (fake target) and loss.b (real target) must differ, both are {a}"
            )
        self.a, self.b, self.c = float(a), float(b), float(c)

    def d(self, real, fake):
        return 0.5 * (real - self.b).pow(2).mean() + 0.5 * (fake - self.a).pow(2).mean()

    def g(self, fake):
        return 0.5 * (fake - self.c).pow(2).mean()

    def __repr__(self) -> str:
        return f"LeastSquares(a={self.a}, b={self.b}, c={self.c})"


# f-GAN, Nowozin et al. 2016, Table 2: for each divergence, the output activation
# g_f (maps D's raw output v into the domain of f*) and f*(g_f(v)) in closed form.
# The closed forms are the table's entries composed and simplified, so they stay
# finite where the literal composition would not (e.g. -log(2 - exp(t)) near t = log 2).
_LOG2 = math.log(2.0)
F_DIVERGENCES = {
    # KL: f(u) = u log u; g_f(v) = v; f*(t) = exp(t - 1)
    "kl": (lambda v: v, lambda v: torch.exp(v - 1.0)),
    # reverse KL: f(u) = -log u; g_f(v) = -exp(-v); f*(t) = -1 - log(-t) -> v - 1
    "reverse_kl": (lambda v: -torch.exp(-v), lambda v: v - 1.0),
    # Pearson chi^2: f(u) = (u - 1)^2; g_f(v) = v; f*(t) = t^2/4 + t
    "pearson": (lambda v: v, lambda v: 0.25 * v * v + v),
    # squared Hellinger: f(u) = (sqrt(u) - 1)^2; g_f(v) = 1 - exp(-v); f*(t) = t/(1 - t) -> exp(v) - 1
    "squared_hellinger": (lambda v: -torch.expm1(-v), lambda v: torch.expm1(v)),
    # Jensen-Shannon: f(u) = -(u + 1) log((1 + u)/2) + u log u;
    # g_f(v) = log 2 - log(1 + exp(-v)); f*(t) = -log(2 - exp(t)) -> softplus(v) - log 2
    "jensen_shannon": (lambda v: _LOG2 - F.softplus(-v), lambda v: F.softplus(v) - _LOG2),
    # the GAN divergence: f(u) = u log u - (u + 1) log(u + 1);
    # g_f(v) = -log(1 + exp(-v)); f*(t) = -log(1 - exp(t)) -> softplus(v)
    "gan": (lambda v: -F.softplus(-v), lambda v: F.softplus(v)),
}
G_UPDATES = ("alternative", "minimax")


class FDivergence(Loss):
    """f-GAN, Nowozin et al. 2016. D (the variational function V) maximizes
    F = E_P[g_f(V(x))] - E_Q[f*(g_f(V(G(z))))]  (Eq. 6), whose supremum over all V
    is D_f(P || Q) = integral of q f(p/q) (P: data, Q: the generator).
    G: ``g_update="alternative"`` maximizes E_Q[g_f(V(G(z)))] (Sec. 3.2, the
    paper's choice); ``"minimax"`` minimizes F, i.e. -E_Q[f*(g_f(V(G(z))))].

    Note on ``jensen_shannon``: Table 1 writes the divergence with a factor 1/2,
    but its generator f (and Table 2's conjugate) gives twice that, 2 JSD(P, Q):
    the optimal D's objective is 2 JSD, which is what we implement.
    """

    def __init__(self, divergence: str = "kl", g_update: str = "alternative"):
        if divergence not in F_DIVERGENCES:
            raise ConfigError(
                f"loss.divergence={divergence!r} is not valid; choose from {', '.join(F_DIVERGENCES)}"
            )
        if g_update not in G_UPDATES:
            raise ConfigError(
                f"loss.g_update={g_update!r} is not valid; choose from {', '.join(G_UPDATES)}"
            )
        self.divergence, self.g_update = divergence, g_update
        self.activation, self.conjugate_of_activation = F_DIVERGENCES[divergence]
        self.name = "fgan_" + {"jensen_shannon": "js"}.get(divergence, divergence)
        # the GAN divergence's D loss is the sigmoid cross-entropy of Goodfellow et al.
        self.logistic = divergence == "gan"
        self.output = "logit" if divergence == "gan" else "score"

    def objective(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """F of Eq. 6: D's variational lower bound on D_f(P || Q)."""
        return self.activation(real).mean() - self.conjugate_of_activation(fake).mean()

    def d(self, real, fake):
        return -self.objective(real, fake)

    def g(self, fake):
        if self.g_update == "minimax":
            return -self.conjugate_of_activation(fake).mean()
        return -self.activation(fake).mean()

    def __repr__(self) -> str:
        return f"FDivergence(divergence={self.divergence!r}, g_update={self.g_update!r})"

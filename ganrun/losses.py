"""Adversarial losses as small pure functions of D's logits.

Every loss is written as a quantity to *minimize*: ``d(real, fake)`` for D and
``g(fake)`` for G, where ``real`` and ``fake`` are D's logits (B,) on data and
on generated samples. Sigmoid-based losses use ``softplus`` for stability:
``log sigmoid(l) = -softplus(-l)`` and ``log(1 - sigmoid(l)) = -softplus(l)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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

    def d(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Minimax(Loss):
    name = "minimax"

    def d(self, real, fake):
        return gan_d_loss(real, fake)

    def g(self, fake):
        return minimax_g_loss(fake)


class NonSaturating(Loss):
    name = "nonsaturating"

    def d(self, real, fake):
        return gan_d_loss(real, fake)

    def g(self, fake):
        return nonsaturating_g_loss(fake)

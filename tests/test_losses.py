"""Each loss formula on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from ganrun import losses


def test_at_chance_discriminator():
    # D(x) = D(G(z)) = 1/2 (logit 0): Eq. 1 gives log(1/2) + log(1/2)
    zero = torch.zeros(4)
    assert losses.gan_d_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert losses.minimax_g_loss(zero).item() == pytest.approx(-math.log(2))
    assert losses.nonsaturating_g_loss(zero).item() == pytest.approx(math.log(2))


def test_matches_the_probability_form():
    real, fake = torch.tensor([1.5, -0.3]), torch.tensor([-2.0, 0.7])
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = -(torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    assert losses.gan_d_loss(real, fake).item() == pytest.approx(expected_d.item(), rel=1e-6)
    assert losses.minimax_g_loss(fake).item() == pytest.approx(
        torch.log(1 - d_fake).mean().item(), rel=1e-6
    )
    assert losses.nonsaturating_g_loss(fake).item() == pytest.approx(
        -torch.log(d_fake).mean().item(), rel=1e-6
    )


def test_saturation():
    # Goodfellow et al. 2014, Sec. 3: when D confidently rejects fakes, log(1 - D(G(z)))
    # saturates (gradient -> 0) while -log D(G(z)) keeps a strong gradient.
    fake = torch.tensor([-12.0], requires_grad=True)
    losses.minimax_g_loss(fake).backward()
    g_minimax = fake.grad.item()
    fake.grad = None
    losses.nonsaturating_g_loss(fake).backward()
    g_ns = fake.grad.item()
    assert abs(g_minimax) < 1e-4
    assert g_ns == pytest.approx(-1.0, abs=1e-4)


def test_stable_for_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    for value in (
        losses.gan_d_loss(big, -big),
        losses.minimax_g_loss(big),
        losses.nonsaturating_g_loss(big),
    ):
        assert torch.isfinite(value)


def test_optimal_discriminator_value():
    # With the optimal D (Goodfellow et al. 2014, Prop. 1) on p_data = p_g, C(G) = -log 4:
    # D's loss (our negation of V) equals log 4.
    logits = torch.zeros(100)
    assert losses.gan_d_loss(logits, logits).item() == pytest.approx(math.log(4))

"""Each loss formula on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from ganrun import losses
from ganrun.errors import ConfigError


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


# --------------------------------------------------------------------------- WGAN, hinge, LSGAN
def test_wasserstein_is_the_critic_gap():
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 0.0, 1.0])
    loss = losses.Wasserstein()
    assert loss.d(real, fake).item() == pytest.approx(0.0 - 3.0)  # E[f(G(z))] - E[f(x)]
    assert loss.g(fake).item() == pytest.approx(0.0)
    assert loss.output == "score"


def test_hinge_values_and_margins():
    loss = losses.Hinge()
    # real logits beyond +1 and fake logits below -1 cost D nothing
    assert loss.d(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0])).item() == 0.0
    # relu(1 - 0.5) = 0.5 and relu(1 + 0) = 1
    assert loss.d(torch.tensor([0.5]), torch.tensor([0.0])).item() == pytest.approx(1.5)
    assert loss.g(torch.tensor([2.0, -4.0])).item() == pytest.approx(1.0)


@pytest.mark.parametrize("a,b,c", [(0.0, 1.0, 1.0), (-1.0, 1.0, 0.0)])
def test_least_squares_optimal_discriminator(a, b, c):
    # Mao et al. 2017, Eq. 4: for fixed G the optimal D(x) = (b p_d + a p_g) / (p_d + p_g);
    # on one point with p_d = 3 p_g that is (3b + a) / 4, and D's loss is minimal there.
    loss = losses.LeastSquares(a, b, c)
    real = torch.full((3,), 0.0, requires_grad=True)
    fake = torch.full((1,), 0.0)

    def d_loss(v):  # the same D value on 3 real copies and 1 fake copy of the point
        return 3 * loss.d(v.expand(3), fake) / 4 + loss.d(real.detach(), v.expand(1)) / 4

    best = (3 * b + a) / 4
    v = torch.tensor(best, requires_grad=True)
    (grad,) = torch.autograd.grad(d_loss(v), v)
    assert grad.item() == pytest.approx(0.0, abs=1e-6)
    assert loss.g(torch.tensor([c])).item() == 0.0
    assert loss.g(torch.tensor([c + 2.0])).item() == pytest.approx(2.0)  # 1/2 * 2^2


def test_least_squares_refuses_equal_targets():
    with pytest.raises(ConfigError, match="must differ"):
        losses.LeastSquares(a=1.0, b=1.0)


# --------------------------------------------------------------------------- f-GAN
# Independent of the implementation: Nowozin et al. 2016, Table 1's generator f, its
# derivative f' (the optimal T*(x) = f'(p(x)/q(x)), Eq. 5) and the inverse of Table 2's
# output activation g_f, so that V*(x) = g_f^{-1}(f'(p/q)).
F_TABLE = {
    "kl": (lambda u: u * np.log(u), lambda u: 1 + np.log(u), lambda t: t),
    "reverse_kl": (lambda u: -np.log(u), lambda u: -1 / u, lambda t: -np.log(-t)),
    "pearson": (lambda u: (u - 1) ** 2, lambda u: 2 * (u - 1), lambda t: t),
    "squared_hellinger": (
        lambda u: (np.sqrt(u) - 1) ** 2,
        lambda u: 1 - 1 / np.sqrt(u),
        lambda t: -np.log(1 - t),
    ),
    "jensen_shannon": (
        lambda u: -(u + 1) * np.log((1 + u) / 2) + u * np.log(u),
        lambda u: np.log(2 * u / (1 + u)),
        lambda t: -np.log(2 * np.exp(-t) - 1),
    ),
}
# P (data) = N(0, 1), Q (generator) = N(0.5, 1.2^2): different variances, so KL and
# reverse KL differ, and sigma_q > sigma_p keeps p/q bounded (Pearson's moments finite).
P_DIST, Q_DIST = stats.norm(0.0, 1.0), stats.norm(0.5, 1.2)
# log p/q = LOG_RATIO_X2 x^2 + ... ; the x^2 coefficient is -1/(2 sp^2) + 1/(2 sq^2)
LOG_RATIO_X2 = -0.5 + 1 / (2 * 1.2**2)


def _divergence(f) -> float:
    """D_f(P || Q) = integral of q f(p/q), by quadrature."""
    value, _ = integrate.quad(
        lambda x: Q_DIST.pdf(x) * f(P_DIST.pdf(x) / Q_DIST.pdf(x)), -15, 15, limit=200
    )
    return value


def _quantile_points(dist, n: int) -> torch.Tensor:
    # midpoint quantiles: means over them are accurate quadratures of expectations
    return torch.tensor(dist.ppf((np.arange(n) + 0.5) / n), dtype=torch.float64)


def test_f_divergences_in_closed_form():
    # sanity check of the quadrature against the closed forms for Gaussians
    mp, sp, mq, sq = 0.0, 1.0, 0.5, 1.2
    kl = math.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5
    bc = math.sqrt(2 * sp * sq / (sp**2 + sq**2)) * math.exp(
        -((mp - mq) ** 2) / (4 * (sp**2 + sq**2))
    )
    assert _divergence(F_TABLE["kl"][0]) == pytest.approx(kl, rel=1e-6)
    assert _divergence(F_TABLE["squared_hellinger"][0]) == pytest.approx(2 * (1 - bc), rel=1e-6)


@pytest.mark.parametrize("divergence", list(F_TABLE))
def test_optimal_critic_attains_the_divergence(divergence):
    # Eq. 4-6: sup_V E_P[g_f(V)] - E_Q[f*(g_f(V))] = D_f(P || Q), attained at V*.
    f, f_prime, g_inv = F_TABLE[divergence]
    loss = losses.FDivergence(divergence)
    xp, xq = _quantile_points(P_DIST, 100_000), _quantile_points(Q_DIST, 100_000)

    def v_star(x):
        return torch.from_numpy(g_inv(f_prime(P_DIST.pdf(x.numpy()) / Q_DIST.pdf(x.numpy()))))

    best = loss.objective(v_star(xp), v_star(xq)).item()
    truth = _divergence(f)
    assert best == pytest.approx(truth, rel=2e-3)
    assert loss.d(v_star(xp), v_star(xq)).item() == pytest.approx(-best)
    # any other critic gives a smaller value (the variational lower bound)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        a, b = (torch.randn(2, generator=gen, dtype=torch.float64) * 0.2).tolist()
        worse = loss.objective(v_star(xp) + a + b * xp, v_star(xq) + a + b * xq).item()
        assert worse < best


@pytest.mark.parametrize(
    "divergence,scale",
    # V* is an affine function of log p/q, a quadratic in x for Gaussians
    [("kl", 1.0), ("reverse_kl", 1.0), ("squared_hellinger", 0.5), ("jensen_shannon", 1.0)],
)
def test_trained_quadratic_critic_recovers_the_divergence(divergence, scale):
    torch.manual_seed(0)
    loss = losses.FDivergence(divergence)
    xp, xq = _quantile_points(P_DIST, 4000), _quantile_points(Q_DIST, 4000)
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(300):
        critic_loss = loss.d(w[0] + w[1] * xp + w[2] * xp**2, w[0] + w[1] * xq + w[2] * xq**2)
        opt.zero_grad()
        critic_loss.backward()
        opt.step()
    assert -critic_loss.item() == pytest.approx(_divergence(F_TABLE[divergence][0]), rel=0.02)
    assert w[2].item() == pytest.approx(scale * LOG_RATIO_X2, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("divergence", list(F_TABLE))
def test_trained_mlp_critic_recovers_the_divergence(divergence):
    # a generic critic (no knowledge of the optimal form), trained on a quadrature grid
    # of P and Q; the slow variant also covers Pearson, whose V* is not quadratic
    torch.manual_seed(0)
    loss = losses.FDivergence(divergence)
    xp, xq = (_quantile_points(d, 4096).float()[:, None] for d in (P_DIST, Q_DIST))
    net = torch.nn.Sequential(
        torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
        torch.nn.Linear(32, 1),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(600):
        critic_loss = loss.d(net(xp).squeeze(1), net(xq).squeeze(1))
        opt.zero_grad()
        critic_loss.backward()
        opt.step()
    assert -critic_loss.item() == pytest.approx(_divergence(F_TABLE[divergence][0]), rel=0.04)


def test_f_gan_generator_updates():
    real, fake = torch.tensor([0.3, -0.2]), torch.tensor([1.0, -2.0])
    for divergence in F_TABLE:
        alt = losses.FDivergence(divergence)
        mm = losses.FDivergence(divergence, g_update="minimax")
        # Sec. 3.2: G maximizes E_Q[g_f(V(G(z)))]
        assert alt.g(fake).item() == pytest.approx(-alt.activation(fake).mean().item())
        # minimax: G minimizes Eq. 6, whose G-dependent part is -E_Q[f*(g_f(V))]
        gap = mm.objective(real, fake) - mm.activation(real).mean()
        assert mm.g(fake).item() == pytest.approx(gap.item())


def test_f_gan_gan_divergence_is_goodfellows_d_loss():
    real, fake = torch.tensor([1.5, -0.3]), torch.tensor([-2.0, 0.7])
    gan = losses.FDivergence("gan")
    assert gan.d(real, fake).item() == pytest.approx(losses.gan_d_loss(real, fake).item())
    assert gan.logistic and not losses.FDivergence("kl").logistic


def test_f_gan_conjugates_are_stable():
    v = torch.tensor([-60.0, -10.0, 0.0, 10.0, 60.0])
    for divergence in ("reverse_kl", "jensen_shannon", "gan"):
        loss = losses.FDivergence(divergence)
        assert torch.isfinite(loss.d(v, v)) and torch.isfinite(loss.g(v))
    # Jensen-Shannon's f*(g_f(v)) = -log(2 - exp(log 2 - log(1 + e^-v))) = softplus(v) - log 2
    js = losses.FDivergence("jensen_shannon")
    t = js.activation(torch.tensor([-1.0, 0.5], dtype=torch.float64))
    literal = -torch.log(2 - torch.exp(t))
    assert torch.allclose(js.conjugate_of_activation(torch.tensor([-1.0, 0.5])).double(), literal)


def test_f_gan_refuses_unknown_options():
    with pytest.raises(ConfigError, match="choose from kl, reverse_kl"):
        losses.FDivergence("tv")
    with pytest.raises(ConfigError, match="g_update"):
        losses.FDivergence("kl", g_update="sometimes")


def test_new_losses_stable_for_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    for loss in (losses.Wasserstein(), losses.Hinge(), losses.LeastSquares()):
        assert torch.isfinite(loss.d(big, -big)) and torch.isfinite(loss.g(big))

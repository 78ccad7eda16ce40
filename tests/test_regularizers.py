"""Regularizers and minibatch discrimination: known answers, composition, resume."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganrun import build, losses
from ganrun import checkpoint as ckpt
from ganrun import regularizers as regs
from ganrun.errors import ConfigError
from ganrun.models import cgan, dcgan, vanilla
from ganrun.models.base import count_parameters
from ganrun.models.minibatch import MinibatchDiscrimination
from ganrun.models.packing import pack_samples
from ganrun.objective import Batch, Objective
from ganrun.paths import group_options
from tests.conftest import compose_config, run_train, tiny_overrides


class LinearCritic(nn.Module):
    """f(x) = w . x (flattened), optionally on PacGAN packs; records the labels it saw."""

    def __init__(self, w: torch.Tensor, pack: int = 1):
        super().__init__()
        self.w, self.pack, self.seen_c = nn.Parameter(w.clone()), pack, []

    def forward_features(self, x, c=None):
        self.seen_c.append(c)
        h = pack_samples(x, self.pack).flatten(1)
        return h @ self.w, h

    def forward(self, x, c=None):
        return self.forward_features(x, c)[0]


class ConstantG(nn.Module):
    """G(z) = theta for every z: the generator of a one-parameter game."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def sample_z(self, n, device="cpu", **_):
        return torch.zeros(n, 1, device=device)

    def forward(self, z, c=None):
        return self.theta.expand(z.shape[0], -1)


def _batch(D, real, fake, real_c=None, G=None):
    return Batch(G, D, real, real_c, fake, None, torch.zeros(len(fake), 1), D(real), D(fake), 0)


def _w(norm: float, dim: int = 12) -> torch.Tensor:
    w = torch.randn(dim, generator=torch.Generator().manual_seed(1))
    return w / w.norm() * norm


# --------------------------------------------------------------------------- gradient penalties
@pytest.mark.parametrize("norm", [0.5, 1.0, 2.0])
def test_gradient_penalty_of_a_linear_critic(norm):
    # grad_x (w . x) = w everywhere, so the penalty is lambda (||w|| - 1)^2 (two-sided)
    # and lambda max(0, ||w|| - 1)^2 (one-sided), whatever the interpolates
    D = LinearCritic(_w(norm))
    real, fake = torch.randn(6, 3, 2, 2), torch.randn(6, 3, 2, 2)
    two = regs.GradientPenalty(weight=10.0).d_term(_batch(D, real, fake))
    one = regs.GradientPenalty(weight=10.0, one_sided=True).d_term(_batch(D, real, fake))
    assert two.item() == pytest.approx(10 * (norm - 1) ** 2, abs=1e-5)
    assert one.item() == pytest.approx(10 * max(0.0, norm - 1) ** 2, abs=1e-5)
    # the penalty trains D: d/dw lambda (||w|| - 1)^2 = 2 lambda (||w|| - 1) w / ||w||
    (grad,) = torch.autograd.grad(two, D.w)
    assert torch.allclose(grad, 20 * (norm - 1) * D.w.detach() / norm, atol=1e-5)


def test_gradient_penalty_norm_is_per_sample_at_the_interpolate():
    # D(x) = 1/2 ||x||^2 has grad x; with real = fake, x_hat = x for any eps
    class Half(nn.Module):
        def forward(self, x, c=None):
            return 0.5 * x.flatten(1).pow(2).sum(1)

    x = torch.tensor([[[0.0, 2.0]], [[3.0, 4.0]]])  # norms 2 and 5
    term = regs.GradientPenalty(weight=1.0).d_term(_batch(Half(), x, x.clone()))
    assert term.item() == pytest.approx(((2 - 1) ** 2 + (5 - 1) ** 2) / 2)


def test_gradient_penalty_on_packs_and_labels():
    # PacGAN: D judges packs of 2 concatenated samples; the gradient is taken w.r.t.
    # the whole pack, whose norm is ||w|| over both halves
    D = LinearCritic(_w(3.0, dim=8), pack=2)
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    labels = torch.arange(6)
    term = regs.GradientPenalty(weight=10.0).d_term(_batch(D, real, fake, real_c=labels))
    assert term.item() == pytest.approx(10 * (3.0 - 1) ** 2, rel=1e-5)
    assert D.seen_c[-1] is labels  # a conditional D sees the real labels for x_hat


def test_r1_of_a_linear_critic_through_the_objective():
    # R1 = gamma/2 E||grad_x D(x)||^2 = gamma/2 ||w||^2 for D = w . x
    D, G = LinearCritic(_w(2.0, dim=1)), ConstantG(torch.zeros(1))
    objective = Objective(losses.NonSaturating(), {"r1": regs.R1(gamma=10.0)})
    loss, stats = objective.d_loss(G, D, torch.randn(5, 1), None, step=0)
    assert stats["reg/r1"].item() == pytest.approx(5.0 * 4.0)
    loss.backward()  # differentiable w.r.t. D's weights (create_graph)
    assert D.w.grad is not None


def test_r1_lazy_interval():
    D, G = LinearCritic(_w(2.0, dim=1)), ConstantG(torch.zeros(1))
    objective = Objective(losses.NonSaturating(), {"r1": regs.R1(gamma=10.0, interval=4)})
    _, at0 = objective.d_loss(G, D, torch.randn(5, 1), None, step=0)
    _, at1 = objective.d_loss(G, D, torch.randn(5, 1), None, step=1)
    assert at0["reg/r1"].item() == pytest.approx(4 * 20.0)  # scaled by the interval
    assert "reg/r1" not in at1


# --------------------------------------------------------------------------- ortho
def test_ortho_is_zero_for_orthogonal_weights():
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))
    layer = nn.Linear(6, 6)
    with torch.no_grad():
        layer.weight.copy_(q * 3.0)  # orthogonal rows of any norm: only W W^T's off-diagonal counts
    assert regs.ortho_penalty(layer).item() == pytest.approx(0.0, abs=1e-8)


def test_ortho_matches_a_hand_computation():
    G = nn.Module()
    G.fc = nn.Linear(2, 2)  # its bias (1-D) is skipped
    G.conv = nn.Conv2d(1, 2, (2, 1), bias=False)  # (2, 1, 2, 1) -> rows of length 2
    G.embed = nn.Embedding(3, 2)  # an embedding table is skipped (BigGAN's blacklist)
    with torch.no_grad():
        G.fc.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        G.conv.weight.copy_(torch.tensor([1.0, 1.0, 1.0, -2.0]).view(2, 1, 2, 1))
    # fc: W W^T = [[5, 11], [11, 25]] -> 2 * 11^2; conv: rows (1, 1), (1, -2) -> 2 * (-1)^2
    assert regs.ortho_penalty(G).item() == pytest.approx(242.0 + 2.0)
    reg = regs.Orthogonal(weight=1e-4)
    fake = torch.zeros(1)
    term = reg.g_term(Batch(G, None, fake, None, fake, None, fake, None, fake, 0))
    assert term.item() == pytest.approx(1e-4 * 244.0)
    # the gradient of Eq. 3 is 4 beta ((W W^T) * (1 - I)) W: twice what BigGAN's code adds
    term.backward()
    w = G.fc.weight.detach()
    off = w @ w.T * (1 - torch.eye(2))
    assert torch.allclose(G.fc.weight.grad, 4e-4 * off @ w)


def _authors_ortho_grad(param: torch.Tensor, strength: float) -> torch.Tensor:
    """BigGAN-PyTorch ``utils.ortho``'s closed form: the gradient it adds to a
    parameter, 2 * strength * ((W W^T) * (1 - I)) W with W = param.view(shape[0], -1)."""
    w = param.detach().reshape(param.shape[0], -1)
    off = (w @ w.T) * (1.0 - torch.eye(w.shape[0]))
    return (2 * strength * off @ w).view(param.shape)


def test_biggan_recipe_ortho_has_the_gradient_of_the_authors_code_at_1e_4():
    """model=biggan's ortho weight gives exactly the gradient BigGAN-PyTorch adds with
    G_ortho 1e-4 (the paper's beta), on a linear and a conv weight."""
    cfg = compose_config(["model=biggan"])
    weight = float(cfg.regularizer.ortho.weight)
    assert weight == 5e-5
    torch.manual_seed(0)
    G = nn.Module()
    G.fc = nn.Linear(5, 4)
    G.conv = nn.Conv2d(3, 6, 3)
    reg = regs.Orthogonal(weight=weight)
    fake = torch.zeros(1)
    reg.g_term(Batch(G, None, fake, None, fake, None, fake, None, fake, 0)).backward()
    for p in (G.fc.weight, G.conv.weight):
        torch.testing.assert_close(p.grad, _authors_ortho_grad(p, 1e-4))
    assert G.fc.bias.grad is None  # 1-D: skipped, as the code skips it


# --------------------------------------------------------------------------- clipping, smoothing
def test_weight_clip_bounds_every_d_parameter():
    D = dcgan.Discriminator((1, 28, 28), width=8)
    with torch.no_grad():
        for p in D.parameters():
            p.normal_(0, 1)
    Objective(losses.Wasserstein(), {"weight_clip": regs.WeightClip(0.01)}).after_d_step(D)
    assert all(p.abs().max().item() <= 0.01 + 1e-9 for p in D.parameters())
    assert all(p.abs().max().item() == pytest.approx(0.01) for p in D.parameters())


def test_label_smoothing_equals_cross_entropy_with_target_0_9():
    D, G = LinearCritic(torch.tensor([1.5, -0.5])), ConstantG(torch.tensor([0.3, 0.2]))
    real = torch.randn(8, 2)
    objective = Objective(losses.NonSaturating(), {"ls": regs.LabelSmoothing(0.9)})
    torch.manual_seed(0)
    loss, _ = objective.d_loss(G, D, real, None, step=0)
    fake = G(G.sample_z(8))
    expected = F.binary_cross_entropy_with_logits(
        D(real), torch.full((8,), 0.9)
    ) + F.binary_cross_entropy_with_logits(D(fake), torch.zeros(8))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("loss", [losses.Hinge(), losses.Wasserstein(), losses.FDivergence("kl")])
def test_label_smoothing_refuses_non_logistic_losses(loss):
    with pytest.raises(ConfigError, match="needs loss=minimax, nonsaturating"):
        Objective(loss, {"label_smoothing": regs.LabelSmoothing()})


# --------------------------------------------------------------------------- feature matching
def test_feature_matching_is_zero_when_features_match_and_replaces_g_loss():
    real = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    D = LinearCritic(torch.tensor([1.0, -1.0]))
    G = ConstantG(real.mean(0))  # its samples' mean feature equals the data's (D is linear)
    objective = Objective(losses.NonSaturating(), {"fm": regs.FeatureMatching()})
    loss, stats = objective.g_loss(G, D, real, None, step=0)
    assert stats["reg/fm"].item() == pytest.approx(0.0)
    assert loss.item() == pytest.approx(0.0)  # the adversarial loss is replaced ...
    assert stats["loss/g"].item() > 0  # ... but still reported


def test_feature_matching_value_and_added_mode():
    real = torch.tensor([[1.0, 2.0], [3.0, 0.0]])  # mean (2, 1)
    D, G = LinearCritic(torch.tensor([1.0, -1.0])), ConstantG(torch.tensor([0.0, 3.0]))
    added = Objective(losses.NonSaturating(), {"fm": regs.FeatureMatching(0.5, False)})
    loss, stats = added.g_loss(G, D, real, None, step=0)
    fm = 0.5 * ((2.0 - 0.0) ** 2 + (1.0 - 3.0) ** 2)
    assert stats["reg/fm"].item() == pytest.approx(fm)
    assert loss.item() == pytest.approx(stats["loss/g"].item() + fm)
    loss.backward()
    assert G.theta.grad is not None


# --------------------------------------------------------------------------- historical averaging
def test_historical_averaging_values_and_state():
    reg = regs.HistoricalAveraging(weight=1.0)
    D, batch = LinearCritic(torch.zeros(2)), None
    values = [torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0]), torch.tensor([2.0, 6.0])]
    expected = []
    for i, v in enumerate(values):
        with torch.no_grad():
            D.w.copy_(v)
        mean = torch.stack(values[: i + 1]).mean(0)
        expected.append((v - mean).pow(2).sum().item())
        batch = Batch(None, D, None, None, None, None, None, None, None, i)
        assert reg.d_term(batch).item() == pytest.approx(expected[-1])
    assert expected == pytest.approx([0.0, 1.0, 16.0])  # means (1,0), (2,0), (2,2)
    # the running mean survives a weights-only round trip and continues exactly
    buffer = io.BytesIO()
    torch.save(reg.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = regs.HistoricalAveraging(weight=1.0)
    restored.load_state_dict(state)
    with torch.no_grad():
        D.w.copy_(torch.tensor([0.0, 0.0]))
    assert restored.d_term(batch).item() == pytest.approx(reg.d_term(batch).item())
    assert restored.count == {"D": 4, "G": 0}


# --------------------------------------------------------------------------- consensus
@pytest.mark.parametrize("full", [True, False])
def test_consensus_on_a_bilinear_game(full):
    # Wasserstein loss, D(x) = phi x, G(z) = theta: loss_D = phi theta - phi m,
    # loss_G = -phi theta; v = (theta - m, -phi), L = 1/2 ((theta - m)^2 + phi^2)
    phi, theta, real = 0.7, 2.0, torch.tensor([[1.0], [2.0], [0.0]])  # m = 1
    D, G = LinearCritic(torch.tensor([phi])), ConstantG(torch.tensor([theta]))
    objective = Objective(losses.Wasserstein(), {"c": regs.Consensus(weight=10.0, full=full)})
    d_own, g_own = 0.5 * (theta - 1) ** 2, 0.5 * phi**2

    loss, stats = objective.d_loss(G, D, real, None, step=0)
    assert stats["reg/c"].item() == pytest.approx(10 * (d_own + (g_own if full else 0)))
    (grad_phi,) = torch.autograd.grad(loss, D.w)
    # loss_D's own gradient is theta - m; L adds gamma phi through the G term
    assert grad_phi.item() == pytest.approx((theta - 1) + (10 * phi if full else 0.0))

    D.requires_grad_(False)  # as in the loop's G phase
    loss, stats = objective.g_loss(G, D, real, None, step=0)
    assert stats["reg/c"].item() == pytest.approx(10 * (g_own + (d_own if full else 0)))
    (grad_theta,) = torch.autograd.grad(loss, G.theta)
    # loss_G's own gradient is -phi; L adds gamma (theta - m) through the D term
    assert grad_theta.item() == pytest.approx(-phi + (10 * (theta - 1) if full else 0.0))
    assert not any(p.requires_grad for p in D.parameters())  # D's flags restored


# --------------------------------------------------------------------------- minibatch discrimination
def test_minibatch_features_hand_computation():
    layer = MinibatchDiscrimination(1, 1, kernel_dims=1)
    with torch.no_grad():
        layer.T.fill_(1.0)
    f = torch.tensor([[0.0], [1.0], [3.0]], requires_grad=True)
    out = layer(f)
    e = math.exp
    expected = [1 + e(-1) + e(-3), e(-1) + 1 + e(-2), e(-3) + e(-2) + 1]  # sum_j exp(-|M_i - M_j|)
    assert torch.allclose(out[:, 0], f.detach()[:, 0])
    assert torch.allclose(out[:, 1], torch.tensor(expected))
    out.sum().backward()
    assert torch.isfinite(f.grad).all() and torch.isfinite(layer.T.grad).all()


def test_minibatch_features_of_identical_samples_count_the_batch():
    layer = MinibatchDiscrimination(4, 3)
    out = layer(torch.ones(5, 4))
    assert torch.allclose(out[:, 4:], torch.full((5, 3), 5.0))


def test_minibatch_mean_averages_over_the_batch():
    # the same hand case as above, each o divided by the batch size N = 3
    summed = MinibatchDiscrimination(1, 1, kernel_dims=1)
    mean = MinibatchDiscrimination(1, 1, kernel_dims=1, mean=True)
    with torch.no_grad():
        summed.T.fill_(1.0), mean.T.fill_(1.0)
    f = torch.tensor([[0.0], [1.0], [3.0]])
    e = math.exp
    expected = [1 + e(-1) + e(-3), e(-1) + 1 + e(-2), e(-3) + e(-2) + 1]
    assert torch.allclose(mean(f)[:, 1], torch.tensor(expected) / 3)
    assert torch.allclose(summed(f)[:, 1], torch.tensor(expected))
    # identical samples: o = 1 whatever the batch size (the sum counts the batch)
    assert torch.allclose(
        MinibatchDiscrimination(4, 3, mean=True)(torch.ones(7, 4))[:, 4:], torch.ones(7, 3)
    )
    # the option reaches the layer from every D's config key
    for D in (
        dcgan.Discriminator((1, 28, 28), width=8, minibatch_features=2, minibatch_mean=True),
        vanilla.Discriminator((2,), width=40, minibatch_features=2, minibatch_mean=True),
        cgan.Discriminator((2,), num_classes=2, minibatch_features=2, minibatch_mean=True),
    ):
        assert D.head.minibatch.mean is True
    # the mean without features would do nothing: refused, for every D that has the key
    for make in (
        lambda: dcgan.Discriminator((1, 28, 28), width=8, minibatch_mean=True),
        lambda: vanilla.Discriminator((2,), width=40, minibatch_mean=True),
        lambda: cgan.Discriminator((2,), num_classes=2, minibatch_mean=True),
    ):
        with pytest.raises(
            ConfigError, match="minibatch_mean=true needs model.D.minibatch_features > 0"
        ):
            make()


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda b: dcgan.Discriminator((1, 28, 28), width=8, minibatch_features=b), (1, 28, 28)),
        (lambda b: dcgan.Discriminator((2,), width=4, minibatch_features=b), (2,)),
        (lambda b: vanilla.Discriminator((2,), width=40, minibatch_features=b), (2,)),
    ],
)
def test_discriminators_with_minibatch_discrimination(make, shape):
    plain, mbd = make(0), make(6)
    x = torch.randn(4, *shape)
    logits, features = mbd.forward_features(x)
    assert logits.shape == (4,) and features.shape == plain.forward_features(x)[1].shape
    A = features.shape[1]
    head_before = count_parameters(plain.head)
    # T (A x 6 x 5) plus a linear head over A + 6 inputs (with bias) replaces the old head
    assert count_parameters(mbd) - count_parameters(plain) == A * 6 * 5 + (A + 6 + 1) - head_before
    # a sample's logit depends on the rest of its minibatch (eval mode: no BatchNorm batch stats);
    # unit head weights, so that o(x)'s change is not lost under a small random init (vanilla's
    # U(-0.005, 0.005) made the change ~1e-8, below allclose's tolerance, for some seeds)
    mbd.eval().double(), plain.eval().double()
    nn.init.ones_(mbd.head.linear.weight)
    x = x.double()
    y = x.clone()
    y[1:] += 1.0
    assert (mbd(x)[0] - mbd(y)[0]).abs() > 1e-7
    assert (plain(x)[0] - plain(y)[0]).abs() < 1e-12


def test_cgan_discriminator_with_minibatch_discrimination():
    # the label path is unchanged; the head reads the joint maxout features plus o(x)
    make = lambda b: cgan.Discriminator(  # noqa: E731
        (1, 8, 8), num_classes=3, x_units=6, y_units=4, joint_units=5, minibatch_features=b
    )
    plain, mbd = make(0), make(4)
    assert count_parameters(mbd) - count_parameters(plain) == 5 * 4 * 5 + (5 + 4 + 1) - (5 + 1)
    x, c = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    mbd.eval().double(), plain.eval().double()
    init_head = mbd.head.linear.weight.detach().clone()
    nn.init.ones_(mbd.head.linear.weight)  # o(x)'s change must not vanish under the tiny init
    y = x.clone()
    y[1:] += 1.0
    assert mbd(x, c).shape == (6,)
    assert (mbd(x, c)[0] - mbd(y, c)[0]).abs() > 1e-7  # sample 0 sees the rest of its batch
    assert (plain(x, c)[0] - plain(y, c)[0]).abs() < 1e-12
    # the uniform init covers the new head's linear unit; T keeps its N(0, 0.05^2) start
    assert 0 < init_head.abs().max() <= 0.005
    assert mbd.head.minibatch.T.abs().max() > 0.05
    with pytest.raises(ConfigError, match="minibatch_features must be >= 0"):
        make(-1)


def test_minibatch_features_off_keeps_the_architecture():
    assert count_parameters(dcgan.Discriminator((3, 64, 64), width=64)) == 2_765_568
    with pytest.raises(ConfigError, match="minibatch_features must be >= 0"):
        dcgan.Discriminator((1, 28, 28), width=8, minibatch_features=-1)


# --------------------------------------------------------------------------- in the real loop
# model-bound terms, tested with their models: info.yaml (InfoGAN's Q head, test_models_zoo_a)
# and aux_classifier.yaml (AC-GAN's class head, test_models_zoo_c)
OWN = [o for o in group_options("regularizer") if o not in ("info", "aux_classifier")]


def test_every_regularizer_option_composes_and_builds():
    assert {"weight_clip", "gp", "gp_one_sided", "r1", "ortho", "consensus"} <= set(OWN)
    assert {"label_smoothing", "feature_matching", "historical_averaging"} <= set(OWN)
    for option in OWN:
        cfg = compose_config([f"regularizer=[{option}]"])
        build.validate(cfg)
        objective = build.build_objective(cfg, 0)
        assert list(objective.regularizers) == [option]
        assert objective.regularizers[option].name in option


def test_recipe_values_reach_the_regularizer():
    cfg = compose_config(["regularizer=[gp,r1]", "+model.recipe.regularizer.gp.weight=3.0"])
    objective = build.build_objective(cfg, 0)
    assert objective.regularizers["gp"].weight == 3.0 and objective.regularizers["r1"].gamma == 10.0


@pytest.mark.parametrize(
    "extra,terms",
    [
        (["regularizer=[gp,r1]", "loss=hinge"], ["reg/gp", "reg/r1"]),
        (["regularizer=[weight_clip]", "loss=wasserstein", "optimizer=rmsprop"], []),
        (
            ["regularizer=[gp_one_sided,ortho]", "loss=wasserstein"],
            ["reg/gp_one_sided", "reg/ortho"],
        ),
        (["regularizer=[consensus]", "loss=least_squares"], ["reg/consensus"]),
        (
            ["regularizer=[label_smoothing,feature_matching,historical_averaging]"],
            ["reg/label_smoothing", "reg/feature_matching", "reg/historical_averaging"],
        ),
        (["regularizer=[r1]", "loss=fgan_js", "model.D.minibatch_features=4"], ["reg/r1"]),
    ],
)
def test_regularizers_compose_and_train(tmp_path, extra, terms):
    overrides = tiny_overrides(
        "vanilla", "ring", "trainer.steps=2", "logger.tensorboard=false", *extra
    )
    cfg, result = run_train(tmp_path, overrides)
    for term in terms:
        assert math.isfinite(result[term]), term
    assert math.isfinite(result["loss/d"]) and math.isfinite(result["loss/g"])
    if "regularizer=[weight_clip]" in extra:
        _, state = ckpt.load(tmp_path)
        assert all(t.abs().max() <= 0.01 for t in state["models"]["D"].values())


def test_historical_averaging_and_optimistic_adam_resume_exactly(tmp_path):
    base = tiny_overrides(
        "vanilla",
        "ring",
        "regularizer=[historical_averaging]",
        "optimizer=optimistic_adam",
        "logger.tensorboard=false",
        "trainer.checkpoint_every=2",
    )
    run_train(tmp_path / "straight", [*base, "trainer.steps=4"])
    run_train(tmp_path / "split", [*base, "trainer.steps=2"])
    run_train(tmp_path / "split", [*base, "trainer.steps=4", f"resume={tmp_path / 'split'}"])
    (_, a), (_, b) = ckpt.load(tmp_path / "straight"), ckpt.load(tmp_path / "split")
    assert a["step"] == b["step"] == 4
    for part in ("G", "D"):
        for k, t in a["models"][part].items():
            assert torch.equal(t, b["models"][part][k]), (part, k)
    state_a, state_b = (
        a["objective"]["historical_averaging"],
        b["objective"]["historical_averaging"],
    )
    assert state_a["count"] == state_b["count"] == {"D": 4, "G": 4}
    for player in ("D", "G"):
        for k, t in state_a["mean"][player].items():
            assert torch.equal(t, state_b["mean"][player][k])

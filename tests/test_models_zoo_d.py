"""EBGAN, BEGAN and unrolled GANs: their formulas (cases with known answers), shapes,
the recipes, and a few steps through the real training loop with checkpoint,
resume (bit-exact, BEGAN's k_t included) and sampling."""

from __future__ import annotations

import copy
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from ganrun import build
from ganrun import checkpoint as ckpt
from ganrun.commands.sample import sample
from ganrun.errors import ConfigError
from ganrun.losses import NonSaturating
from ganrun.models import began, ebgan, unrolled
from ganrun.objective import Batch, Objective
from ganrun.optim import Adam, OptimisticAdamOptimizer
from tests.conftest import (
    TINY_MODEL,
    TINY_TRAINER,
    assert_resume_is_exact,
    compose_config,
    run_train,
)


def tiny(model: str, *extra: str, dataset: str = "mnist_embedded") -> list[str]:
    return [
        f"model={model}",
        f"dataset={dataset}",
        *TINY_MODEL[model],
        *TINY_TRAINER,
        "trainer.batch_size=8",
        "logger.tensorboard=false",
        *extra,
    ]


# --------------------------------------------------------------------------- EBGAN formulas
def test_pulling_away_term_known_answers():
    v = torch.tensor([[1.0, 2.0, -0.5]])
    assert float(ebgan.pulling_away(v.repeat(5, 1))) == pytest.approx(1.0)  # identical: 1
    scaled = v.repeat(4, 1) * torch.tensor([[1.0], [3.0], [0.2], [7.0]])
    assert float(ebgan.pulling_away(scaled)) == pytest.approx(1.0)  # norms do not matter
    assert float(ebgan.pulling_away(torch.eye(6)[:4] * 2.5)) == pytest.approx(0.0, abs=1e-12)
    # two unit vectors 60 degrees apart: cos^2 = 1/4 for both ordered pairs
    pair = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert float(ebgan.pulling_away(pair)) == pytest.approx(0.25)
    # three vectors: pairs (0,1) cos 1, (0,2) and (1,2) cos 0 -> 2 * 1 / (3 * 2)
    three = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert float(ebgan.pulling_away(three)) == pytest.approx(1 / 3)


def test_ebgan_margin_loss_is_eqs_1_and_2():
    loss = ebgan.MarginLoss(margin=10.0)
    real, fake = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 12.0])
    # D: mean(D(x)) + mean([m - D(G(z))]^+) = 1.5 + (7 + 0) / 2
    assert float(loss.d(real, fake)) == pytest.approx(5.0)
    assert float(loss.g(fake)) == pytest.approx(7.5)
    with pytest.raises(ConfigError, match="margin"):
        ebgan.MarginLoss(margin=0.0)


def test_ebgan_energy_is_the_papers_norm_or_the_mse():
    """Sec. 2.3: D(x) = ||Dec(Enc(x)) - x|| per sample; energy=mse is the opt-in mean."""
    torch.manual_seed(0)
    D = ebgan.Discriminator((1, 28, 28), width=4)
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    energy, code = D.forward_features(x)
    recon, _ = D.reconstruct(x)
    assert energy.shape == (3,) and code.shape == (3, 8 * 7 * 7)
    assert torch.allclose(energy[1], (recon[1] - x[1]).pow(2).sum().sqrt())
    assert (energy >= 0).all()
    D.energy = "mse"
    assert torch.allclose(D.forward_features(x)[0][1], F.mse_loss(recon[1], x[1]))
    # a perfect reconstruction has energy 0 and a finite (zero) gradient
    zero = torch.zeros(2, 4, requires_grad=True)
    ebgan.reconstruction_energy(zero.detach(), zero).sum().backward()
    assert torch.equal(zero.grad, torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="energy"):
        ebgan.Discriminator((1, 28, 28), width=4, energy="l1")


# --------------------------------------------------------------------------- BEGAN formulas
def test_began_k_update_and_clipping():
    k = torch.tensor(0.0)
    # k + lambda_k (gamma L(x) - L(G(z))) = 0 + 0.001 (0.5 * 1 - 0.3)
    assert float(began.k_update(k, 1.0, 0.3, 0.5, 0.001)) == pytest.approx(2e-4)
    assert float(began.k_update(k, 0.1, 1.0, 0.5, 0.001)) == 0.0  # clipped below at 0
    assert float(began.k_update(torch.tensor(0.9999), 10.0, 0.0, 0.5, 0.001)) == 1.0  # above
    assert float(began.convergence_measure(1.0, 0.3, 0.5)) == pytest.approx(1.2)
    assert float(began.convergence_measure(1.0, 0.9, 0.5)) == pytest.approx(1.4)


def test_began_loss_uses_k_and_updates_it_once_per_g_step():
    loss = began.EquilibriumLoss(gamma=0.5, lambda_k=0.001)
    real, fake = torch.tensor([1.0, 1.0]), torch.tensor([0.25, 0.35])
    assert float(loss.d(real, fake)) == pytest.approx(1.0)  # k_0 = 0
    stats = loss.observe_d(real, fake)
    assert float(stats["began/k_t"]) == 0.0
    assert float(loss.k) == 0.0  # D's step leaves k alone
    g_fake = torch.tensor([0.2, 0.4])  # L(G(z_G)) = 0.3
    stats = loss.observe_g(g_fake)
    assert float(stats["began/M_global"]) == pytest.approx(1.2)
    assert float(loss.k) == pytest.approx(2e-4)
    assert float(loss.d(real, fake)) == pytest.approx(1.0 - 2e-4 * 0.3)
    assert float(loss.g(g_fake)) == pytest.approx(0.3)
    # the Objective checkpoints k beside the regularizers' state and restores it
    obj = Objective(loss)
    state = obj.state_dict()
    assert torch.equal(state[Objective.LOSS_STATE]["k"], loss.k)
    other = Objective(began.EquilibriumLoss())
    other.load_state_dict(state)
    assert torch.equal(other.loss.k, loss.k)
    assert Objective.LOSS_STATE not in Objective(NonSaturating()).state_dict()


def test_began_networks_start_with_their_inputs_trace_alive():
    """Glorot init (the reference code's): at PyTorch's default init D's reconstruction
    of 32 different images varied by 1e-5 per pixel (D reconstructed one image whatever
    it was given, and G collapsed onto it) and G's samples by 4e-3 across z."""
    torch.manual_seed(0)
    x = torch.rand(32, 1, 28, 28) * 2 - 1
    D = began.Discriminator((1, 28, 28), width=16)
    G = began.Generator((1, 28, 28), z_dim=64, width=16)
    with torch.no_grad():
        reconstruction, _ = D.reconstruct(x)
        samples = G(G.sample_z(32))
    assert reconstruction.std(0).mean() > 0.01  # measured 0.033
    assert samples.std(0).mean() > 0.05  # measured 0.21
    for m in [*D.modules(), *G.modules()]:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = math.sqrt(6 / (m.weight[0].numel() + m.weight[:, 0].numel()))
            assert m.weight.abs().max() <= bound and not m.bias.any()


def test_step_schedule_halves_every_decay_every_steps():
    recipe = Adam(lr_g=1e-4, lr_d=2e-4, schedule="step", decay_factor=2.0, decay_every=100)
    assert [recipe.lr_at(1e-4, s, 1000) for s in (0, 99, 100, 250)] == pytest.approx(
        [1e-4, 1e-4, 5e-5, 2.5e-5]
    )
    with pytest.raises(ConfigError, match="decay_every"):
        Adam(schedule="step", decay_factor=2.0, decay_every=0)


# --------------------------------------------------------------------------- unrolled
class TinyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x, c=None):
        return self.lin(x).view(-1)


def _tiny_game(seed: int = 0):
    torch.manual_seed(seed)
    G, D = nn.Linear(3, 2), TinyD()
    real, z = torch.randn(6, 2), torch.randn(6, 3)
    return G, D, real, z


def _hand_grad_d(w, b, real, fake):
    """d/d(w, b) of mean softplus(-D(x)) + mean softplus(D(f)), D(v) = v w + b, written out."""
    s, t = real @ w + b, fake @ w + b
    a, c = -torch.sigmoid(-s), torch.sigmoid(t)
    gw = (a[:, None] * real).mean(0) + (c[:, None] * fake).mean(0)
    gb = a.mean() + c.mean()
    return gw, gb


def _hand_theta_k(G, D, real, z, K, rule, opt=None):
    """theta_D^K = (w, b) after K hand-written D steps, and the generated batch."""
    fake = G(z)
    w, b = D.lin.weight.detach()[0], D.lin.bias.detach()[0]
    group = opt.param_groups[0] if opt is not None else {"lr": 0.1}
    lr = group["lr"]
    if rule == "adam":
        b1, b2 = group["betas"]
        eps = group["eps"]
        sw, sb = opt.state[D.lin.weight], opt.state[D.lin.bias]
        mw, vw, mb, vb = (
            sw["exp_avg"][0],
            sw["exp_avg_sq"][0],
            sb["exp_avg"][0],
            sb["exp_avg_sq"][0],
        )
        t = int(sw["step"])
    for _ in range(K):
        gw, gb = _hand_grad_d(w, b, real, fake)
        if rule == "sgd":
            w, b = w - lr * gw, b - lr * gb
        else:
            t += 1
            mw, mb = b1 * mw + (1 - b1) * gw, b1 * mb + (1 - b1) * gb
            vw, vb = b2 * vw + (1 - b2) * gw**2, b2 * vb + (1 - b2) * gb**2
            c1, c2 = 1 - b1**t, math.sqrt(1 - b2**t)
            w = w - lr / c1 * mw / (vw.sqrt() / c2 + eps)
            b = b - lr / c1 * mb / (vb.sqrt() / c2 + eps)
    return w, b, fake


def _hand_unrolled_loss(G, D, real, z, K, rule, opt=None, objective="value", part="both"):
    """G's objective at theta_D^K, every step written out by hand: ``value`` is f_K
    (Eq. 9), mean log D(x) + mean log(1 - D(G(z))) = -(mean softplus(-D(x)) + mean
    softplus(D(G(z)))) (``part`` picks one term); ``g_loss`` the non-saturating loss."""
    w, b, fake = _hand_theta_k(G, D, real, z, K, rule, opt)
    if objective == "g_loss":
        return F.softplus(-(fake @ w + b)).mean()
    real_term, fake_term = -F.softplus(-(real @ w + b)).mean(), -F.softplus(fake @ w + b).mean()
    return {"both": real_term + fake_term, "real": real_term, "fake": fake_term}[part]


def _unrolled_loss(G, D, real, z, K, reg_kwargs, opt):
    reg = unrolled.Unrolled(steps=K, **reg_kwargs)
    reg.bind(NonSaturating())
    reg.bind_optimizers(None, opt)
    fake = G(z)
    batch = Batch(G, D, real, None, fake, None, z, None, D(fake), 0)
    return reg.g_term(batch)


def _grads(loss, G):
    return torch.autograd.grad(loss, list(G.parameters()), retain_graph=True)


@pytest.mark.parametrize("objective", ["value", "g_loss"])
@pytest.mark.parametrize("K", [1, 2])
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_unrolled_g_loss_equals_the_hand_unrolled_one(K, rule, objective):
    G, D, real, z = _tiny_game()
    if rule == "adam":
        opt = torch.optim.Adam(D.parameters(), lr=0.05, betas=(0.5, 0.999))
        # one real D step first, so the unroll continues a non-trivial Adam state
        NonSaturating().d(D(real), D(G(z).detach())).backward()
        opt.step()
        kwargs = {"optimizer": "d"}
    else:
        opt, kwargs = None, {"optimizer": "sgd", "lr": 0.1}
    kwargs["objective"] = objective
    before = {k: v.clone() for k, v in D.state_dict().items()}
    ours = _unrolled_loss(G, D, real, z, K, kwargs, opt)
    hand = _hand_unrolled_loss(G, D, real, z, K, rule, opt, objective)
    assert ours.item() == pytest.approx(hand.item(), rel=1e-5)
    for a, b in zip(_grads(ours, G), _grads(hand, G)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    # D's own parameters are untouched; the second-order term is there
    assert all(torch.equal(v, before[k]) for k, v in D.state_dict().items())
    first = _unrolled_loss(G, D, real, z, K, {**kwargs, "second_order": False}, opt)
    assert not all(torch.allclose(a, b) for a, b in zip(_grads(ours, G), _grads(first, G)))
    if objective == "value":
        # f_K's real-data term reaches G only through theta_D^K: the hand reference's
        # real term has a gradient (so the comparison above would catch its loss), and
        # without the second-order term G's gradient is the one at a constant theta_D^K
        real_part = _hand_unrolled_loss(G, D, real, z, K, rule, opt, objective, part="real")
        assert max(g.abs().max() for g in _grads(real_part, G)) > 1e-4
        w_k, b_k, _ = _hand_theta_k(G, D, real, z, K, rule, opt)
        held = -F.softplus(G(z) @ w_k.detach() + b_k.detach()).mean()  # theta_D^K constant
        for a, b in zip(_grads(first, G), _grads(held, G)):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.5, 0.9), weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, nesterov=True),
        lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.3, centered=True),
        lambda p: OptimisticAdamOptimizer(p, lr=0.01),
    ],
    ids=["adam", "sgd", "rmsprop", "optimistic_adam"],
)
def test_unrolled_steps_mirror_d_optimizer(make):
    """Two unrolled steps on D's optimizer (after two real ones) land where two more
    real optimizer steps on a copy of D land."""
    G, D, real, z = _tiny_game(1)
    opt = make(D.parameters())
    fake = G(z).detach()
    for _ in range(2):
        opt.zero_grad()
        NonSaturating().d(D(real), D(fake)).backward()
        opt.step()
    D2 = copy.deepcopy(D)
    opt2 = make(D2.parameters())
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict shares tensors
    for _ in range(2):
        opt2.zero_grad()
        NonSaturating().d(D2(real), D2(fake)).backward()
        opt2.step()
    reg = unrolled.Unrolled(steps=2, optimizer="d")
    reg.bind(NonSaturating())
    reg.bind_optimizers(None, opt)
    params = reg.unrolled_params(D, real, None, fake, None)
    for name, p in D2.named_parameters():
        assert torch.allclose(params[name], p, rtol=1e-5, atol=1e-7), name


def test_unrolled_on_a_batchnorm_d_leaves_its_statistics_alone():
    cfg = compose_config(tiny("dcgan", "regularizer=[unrolled]", "regularizer.unrolled.steps=2"))
    b = build.build(cfg)
    real = next(b.data.batches(8, 0, start=0, device=torch.device("cpu")))[0]
    loss, _ = b.objective.d_loss(b.G, b.D, real, None, 0)
    loss.backward()
    b.opt_d.step()
    b.D.requires_grad_(False)
    before = {k: v.clone() for k, v in b.D.state_dict().items()}
    z = b.G.sample_z(8)
    fake = b.G(z)
    term = b.objective.regularizers["unrolled"].g_term(
        Batch(b.G, b.D, real, None, fake, None, z, None, fake.new_zeros(8), 0)
    )
    term.backward()
    assert torch.isfinite(term)  # running stats, weights: the unroll used copies
    assert all(torch.equal(v, before[k]) for k, v in b.D.state_dict().items())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in b.G.parameters())
    loss, stats = b.objective.g_loss(b.G, b.D, real, None, 0)  # in the objective: replaces G's loss
    assert torch.equal(loss, stats["reg/unrolled"]) and "loss/g" in stats


def test_unrolled_refuses_an_optimizer_it_cannot_mirror():
    reg = unrolled.Unrolled(steps=1)
    with pytest.raises(ConfigError, match="cannot unroll"):
        reg.bind_optimizers(None, torch.optim.Adagrad([nn.Parameter(torch.zeros(1))]))
    with pytest.raises(ConfigError, match="steps"):
        unrolled.Unrolled(steps=0)
    with pytest.raises(ConfigError, match="regularizer.unrolled.objective"):
        unrolled.Unrolled(objective="nonsaturating")


# --------------------------------------------------------------------------- shapes, recipes
@pytest.mark.parametrize("res", [28, 32, 64])
def test_autoencoder_shapes(res):
    x = torch.rand(2, 3, res, res) * 2 - 1
    D = ebgan.Discriminator((3, res, res), width=4)
    energy, code = D.forward_features(x)
    assert D.reconstruct(x)[0].shape == x.shape and energy.shape == (2,)
    side = {28: 7, 32: 4, 64: 8}[res]  # the paper's 64 px code is 8x8x4w
    assert code.shape == (2, (8 if res == 28 else 16) * side * side)
    G = began.Generator((3, res, res), z_dim=8, width=4)
    x = G(G.sample_z(2))
    assert x.shape == (2, 3, res, res)
    D = began.Discriminator((3, res, res), width=4, h_dim=8)
    loss, h = D.forward_features(x)
    assert loss.shape == (2,) and h.shape == (2, 8) and D.reconstruct(x)[0].shape == x.shape
    blocks = {28: 3, 32: 3, 64: 4}[res]  # 8x8 (7x7 at 28 px) at the boundary
    assert D.to_h.in_features == 4 * blocks * {28: 7, 32: 8, 64: 8}[res] ** 2
    G.eval()
    assert G(G.sample_z(2) * 50).abs().max() <= 1.0  # clamped in eval mode


def test_recipes_have_the_papers_settings():
    cfg = OmegaConf.to_container(compose_config(["model=ebgan"]), resolve=True)
    assert cfg["loss"]["margin"] == 10.0 and cfg["regularizer"]["pulling_away"]["weight"] == 0.1
    assert cfg["model"]["G"]["_target_"] == "ganrun.models.dcgan.Generator"
    assert cfg["model"]["D"]["energy"] == "norm"  # Sec. 2.3: ||Dec(Enc(x)) - x||
    assert (cfg["optimizer"]["lr_g"], cfg["optimizer"]["lr_d"]) == (1e-3, 1e-3)  # Sec. 4.1
    cfg = OmegaConf.to_container(compose_config(["model=began"]), resolve=True)
    assert (cfg["loss"]["gamma"], cfg["loss"]["lambda_k"], cfg["loss"]["k_init"]) == (0.5, 1e-3, 0)
    opt = cfg["optimizer"]
    assert (opt["lr_g"], opt["lr_d"], opt["schedule"], opt["decay_factor"]) == (
        1e-4, 1e-4, "step", 2.0,
    )  # fmt: skip
    assert opt["decay_every"] == 100000 and cfg["trainer"]["batch_size"] == 16
    assert cfg["model"]["z_dim"] == cfg["model"]["h_dim"] == 64
    cfg = OmegaConf.to_container(compose_config(["model=unrolled"]), resolve=True)
    assert cfg["loss"]["_target_"] == "ganrun.losses.Minimax"
    assert cfg["regularizer"]["unrolled"]["steps"] == 10
    assert (cfg["optimizer"]["lr_g"], cfg["optimizer"]["lr_d"]) == (1e-4, 1e-4)
    assert cfg["optimizer"]["betas"] == [0.5, 0.999] and cfg["model"]["z_dim"] == 256
    cfg = OmegaConf.to_container(compose_config(["experiment=unrolled_ring_modes"]), resolve=True)
    assert (cfg["dataset"]["radius"], cfg["dataset"]["std"]) == (2.0, 0.02)


def test_energy_discriminators_and_energy_losses_pair_only_with_each_other():
    with pytest.raises(ConfigError, match="energy discriminator"):
        build.validate(compose_config(["model=ebgan", "loss=nonsaturating"]))
    with pytest.raises(ConfigError, match="needs an energy discriminator"):
        build.validate(compose_config(["model=dcgan", "loss=began"]))
    build.validate(compose_config(["model=began", "loss=ebgan"]))  # both energies: allowed


def test_one_d_and_one_g_step_are_finite():
    for model in ("ebgan", "began", "unrolled"):
        b = build.build(compose_config(tiny(model)))
        real = next(b.data.batches(8, 0, start=0, device=torch.device("cpu")))[0]
        loss_d, stats_d = b.objective.d_loss(b.G, b.D, real, None, 0)
        loss_d.backward()
        b.D.requires_grad_(False)
        loss_g, stats_g = b.objective.g_loss(b.G, b.D, real, None, 0)
        loss_g.backward()
        assert torch.isfinite(loss_d) and torch.isfinite(loss_g), model
        assert all(torch.isfinite(v) for v in {**stats_d, **stats_g}.values()), model
        if model == "ebgan":
            assert "reg/pulling_away" in stats_g
        if model == "began":
            assert {"began/k_t", "began/M_global"} <= set(stats_d) | set(stats_g)


# --------------------------------------------------------------------------- the real loop
RUNS = {
    "ebgan": tiny("ebgan"),
    "unrolled": tiny("unrolled", dataset="ring"),
}


@pytest.mark.parametrize("key", list(RUNS))
def test_trains_checkpoints_resumes_and_samples(key, tmp_path):
    run_dir = tmp_path / "run"
    _, result = run_train(run_dir, RUNS[key])
    assert ckpt.load(run_dir)[1]["step"] == 3
    assert all(math.isfinite(v) for k, v in result.items() if k.startswith(("loss/", "reg/")))
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    run_train(resumed, [*RUNS[key], "trainer.steps=4", f"resume={resumed}"])
    assert ckpt.load(resumed)[1]["step"] == 4
    out = tmp_path / "grid.png"
    sample(compose_config(["device=cpu", f"ckpt={run_dir}", "n=4", f"out={out}"], "sample"), out)
    assert Image.open(out).size[0] > 0


def test_began_resume_is_bit_exact_with_its_k_t(tmp_path):
    overrides = [*tiny("began"), "trainer.n_critic=1", "model.recipe.loss.began.lambda_k=0.05"]
    assert_resume_is_exact(tmp_path, overrides, steps=4, split=2)
    a, b = ckpt.load(tmp_path / "straight")[1], ckpt.load(tmp_path / "split")[1]
    k = a["objective"][Objective.LOSS_STATE]["k"]
    assert float(k) > 0.0  # k_t moved (lambda_k raised so that 4 steps show it)
    assert torch.equal(k, b["objective"][Objective.LOSS_STATE]["k"])
    out = tmp_path / "grid.png"
    sample(
        compose_config(["device=cpu", f"ckpt={tmp_path / 'split'}", f"out={out}"], "sample"), out
    )
    assert Image.open(out).size[0] > 0

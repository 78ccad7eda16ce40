"""LSGAN, DRAGAN and AC-GAN: their formulas (cases with known answers), the papers'
networks and settings, one D and one G step, and a few steps through the real loop
with checkpoint, bit-exact resume and sampling (AC-GAN's class rows through the CLI)."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn

from ganrun import build
from ganrun.commands.sample import class_rows, load_generator, sample
from ganrun.errors import ConfigError
from ganrun.losses import LeastSquares
from ganrun.models import acgan, dragan, lsgan
from ganrun.objective import Batch
from ganrun.regularizers import DRAGANPenalty, dragan_perturb
from tests.conftest import (
    TINY_MODEL,
    TINY_TRAINER,
    assert_resume_is_exact,
    compose_config,
    ganrun,
)

MODELS = ("lsgan", "dragan", "acgan")


def tiny(model: str, *extra: str) -> list[str]:
    return [
        f"model={model}",
        "dataset=mnist_embedded",
        *TINY_MODEL[model],
        *TINY_TRAINER,
        "trainer.batch_size=8",
        "logger.tensorboard=false",
        *extra,
    ]


def _batch(D, real, real_c=None, f_real=None, f_fake=None, fake_c=None, d_real=None) -> Batch:
    n = real.shape[0]
    d_real = torch.zeros(n) if d_real is None else d_real
    return Batch(
        nn.Identity(), D, real, real_c, real, fake_c, torch.zeros(n, 1), d_real,
        torch.zeros(n), 0, f_real, f_fake,
    )  # fmt: skip


# --------------------------------------------------------------------------- LSGAN
@pytest.mark.parametrize(
    "coding",
    [(0.0, 1.0, 1.0), (-1.0, 1.0, 0.0)],  # Eq. 9 (the recipe's), Eq. 8 (Pearson chi^2)
)
def test_lsgan_losses_at_the_codings_targets(coding):
    a, b, c = coding
    extra = [f"model.recipe.loss.least_squares.{k}={v}" for k, v in zip("abc", coding)]
    loss = build.build_objective(compose_config(["model=lsgan", *extra]), 0).loss
    assert isinstance(loss, LeastSquares) and (loss.a, loss.b, loss.c) == coding
    at = lambda v: torch.full((5,), v)  # noqa: E731
    assert float(loss.d(at(b), at(a))) == 0.0  # D hits both targets: no loss
    assert float(loss.g(at(c))) == 0.0  # G reaches its target
    # D answering the opposite targets: 1/2 (a - b)^2 + 1/2 (b - a)^2
    assert float(loss.d(at(a), at(b))) == pytest.approx((a - b) ** 2)
    assert float(loss.g(at(a))) == pytest.approx(0.5 * (a - c) ** 2)


def test_lsgan_recipe_is_the_papers():
    cfg = compose_config(["model=lsgan"])
    assert cfg.loss._target_ == "ganrun.losses.LeastSquares"
    assert (cfg.loss.a, cfg.loss.b, cfg.loss.c) == (0.0, 1.0, 1.0)  # 0-1-1 coding, Eq. 9
    assert cfg.optimizer._target_ == "ganrun.optim.Adam"
    assert cfg.optimizer.lr_g == cfg.optimizer.lr_d == pytest.approx(2e-4)
    assert list(cfg.optimizer.betas) == [0.5, 0.999]
    assert cfg.trainer.batch_size == 64 and cfg.trainer.n_critic == 1
    assert cfg.model.z_dim == 1024 and cfg.model.G.z_dist == "uniform"
    assert list(cfg.get("regularizer") or {}) == []


def test_lsgan_28px_is_the_character_network():
    G, D = lsgan.Generator((1, 28, 28)), lsgan.Discriminator((1, 28, 28))  # width 64
    assert G.fc[0].in_features == 1024 and G.fc[0].out_features == 128 * 7 * 7
    deconvs = [m for m in G.conv if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.out_channels, m.kernel_size, m.stride) for m in deconvs] == [
        (128, (5, 5), (2, 2)),
        (1, (5, 5), (2, 2)),
    ]
    convs = [m for m in D.trunk if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [getattr(m, "out_channels", getattr(m, "out_features", None)) for m in convs] == [
        256,
        320,
        1024,
    ]
    assert D.head.in_features == 1024 and D.head.out_features == 1
    small_G, small_D = (
        lsgan.Generator((1, 28, 28), z_dim=8, width=2),
        lsgan.Discriminator((1, 28, 28), width=2),
    )
    x = small_G(small_G.sample_z(3))
    assert x.shape == (3, 1, 28, 28) and x.abs().max() <= 1.0
    logits, feats = small_D.forward_features(x)
    assert logits.shape == (3,) and feats.shape == (3, 32)


@pytest.mark.parametrize("res", [32, 112])
def test_lsgan_scene_network(res):
    w = 2
    G, D = (
        lsgan.Generator((3, res, res), z_dim=8, width=w),
        lsgan.Discriminator((3, res, res), width=w),
    )
    deconvs = [m for m in G.conv if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in deconvs] == [
        (4 * w, 3, 2), (4 * w, 3, 1), (4 * w, 3, 2), (4 * w, 3, 1), (2 * w, 3, 2), (w, 3, 2),
        (3, 3, 1),
    ]  # fmt: skip
    assert G.start == res // 16
    convs = [m for m in D.trunk if isinstance(m, nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs] == [
        (w, 5, 2), (2 * w, 5, 2), (4 * w, 5, 2), (8 * w, 5, 2),
    ]  # fmt: skip
    x = G(G.sample_z(2))
    assert x.shape == (2, 3, res, res)
    assert D(x).shape == (2,) and D.head.in_features == 8 * w * (res // 16) ** 2


# --------------------------------------------------------------------------- DRAGAN
def test_dragan_perturbation_statistics():
    torch.manual_seed(0)
    x = torch.randn(2000, 1, 8, 8) * 2.0 + 3.0
    sigma = float(x.std(unbiased=False))
    delta = (dragan_perturb(x, scale=0.5) - x) / sigma
    # delta = alpha * 0.5 * sigma * u, alpha, u ~ U[0, 1]: mean 0.5/4, std 0.5*sqrt(1/9 - 1/16)
    assert float(delta.mean()) == pytest.approx(0.125, rel=0.02)
    assert float(delta.std()) == pytest.approx(0.5 * math.sqrt(1 / 9 - 1 / 16), rel=0.02)
    assert float(delta.min()) >= 0.0 and float(delta.max()) <= 0.5 + 1e-6
    # the spread follows the data's std: the same draw on 10x the data is 10x the delta
    torch.manual_seed(1)
    d1 = dragan_perturb(x, 0.5) - x
    torch.manual_seed(1)
    d10 = dragan_perturb(10 * x, 0.5) - 10 * x
    assert torch.allclose(d10, 10 * d1, rtol=1e-4, atol=1e-4)
    # alpha is one number per D output (a pack of 4 samples here), u one per entry
    x = torch.randn(8, 3)
    torch.manual_seed(2)
    u, alpha = torch.rand(8, 3), torch.rand(2)
    expected = x + alpha.repeat_interleave(4).view(8, 1) * (0.5 * x.std(unbiased=False) * u)
    torch.manual_seed(2)
    assert torch.allclose(dragan_perturb(x, 0.5, n_out=2), expected)


def test_dragan_penalty_on_a_linear_d_is_lambda_times_norm_minus_k_squared():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5
    D = nn.Linear(2, 1)
    with torch.no_grad():
        D.weight.copy_(w.view(1, 2))
    D_flat = lambda x, c=None: D(x).view(-1)  # noqa: E731
    real = torch.randn(16, 2)
    term = DRAGANPenalty(weight=10.0).d_term(_batch(D_flat, real))
    assert float(term.detach()) == pytest.approx(10.0 * (5.0 - 1.0) ** 2)
    term = DRAGANPenalty(weight=2.0, k=5.0).d_term(_batch(D_flat, real))
    assert float(term.detach()) == pytest.approx(0.0, abs=1e-10)


def test_dragan_penalty_is_taken_at_the_perturbed_point():
    # D(x) = 1/2 ||x||^2 has gradient x: the penalty reads ||x + delta||
    D = lambda x, c=None: 0.5 * x.pow(2).flatten(1).sum(1)  # noqa: E731
    real = torch.randn(32, 3)
    torch.manual_seed(5)
    term = DRAGANPenalty(weight=10.0, scale=0.5).d_term(_batch(D, real))
    torch.manual_seed(5)
    x_hat = dragan_perturb(real, 0.5)
    assert not torch.equal(x_hat, real)
    expected = 10.0 * (x_hat.norm(dim=1) - 1.0).pow(2).mean()
    assert float(term.detach()) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ConfigError, match="regularizer.dragan.weight must be > 0"):
        DRAGANPenalty(weight=0.0)


def test_dragan_recipe_and_networks_are_the_authors_mnist_code():
    cfg = compose_config(["model=dragan"])
    assert list(cfg.regularizer) == ["dragan"]
    assert cfg.regularizer.dragan.weight == 10.0 and cfg.regularizer.dragan.scale == 0.5
    assert cfg.regularizer.dragan.k == 1.0
    assert cfg.loss._target_ == "ganrun.losses.NonSaturating"
    assert cfg.optimizer.lr_g == cfg.optimizer.lr_d == pytest.approx(1e-4)
    assert list(cfg.optimizer.betas) == [0.5, 0.9]
    assert cfg.trainer.batch_size == 128 and cfg.trainer.n_critic == 1
    G, D = dragan.Generator((1, 28, 28)), dragan.Discriminator((1, 28, 28))

    def sizes(m):
        return [(f.in_features, f.out_features) for f in m.modules() if isinstance(f, nn.Linear)]

    assert sizes(G) == [(100, 128), (128, 784)] and sizes(D) == [(784, 128), (128, 1)]
    # the code's xavier_init: std 1 / sqrt(fan_in / 2)
    assert float(D.trunk[0].weight.detach().std()) == pytest.approx(math.sqrt(2 / 784), rel=0.05)
    x = G(G.sample_z(4))
    assert x.shape == (4, 1, 28, 28) and x.abs().max() <= 1.0
    pts = dragan.Generator((2,), z_dim=4, width=8)
    assert pts(pts.sample_z(3)).shape == (3, 2)  # 2-D mixtures too (linear output)
    # the penalty composes with another model
    build.validate(compose_config(["model=dcgan", "regularizer=[dragan]", "model.width=4"]))


# --------------------------------------------------------------------------- AC-GAN
def test_acgan_class_term_on_hand_made_logits():
    class Head:
        classify = staticmethod(lambda f: f)  # features are the class logits

    f_real = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # P(c=0) = 3/4; 1/2
    f_fake = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])  # P(c=1) = 4/5; 1/2
    real_c, fake_c = torch.tensor([0, 1]), torch.tensor([1, 0])
    b = _batch(Head(), torch.zeros(2, 1), real_c, f_real, f_fake, fake_c)
    reg = acgan.AuxiliaryClassifier(weight=2.0)
    lc_real = -(math.log(0.75) + math.log(0.5)) / 2  # -E log P(C = c | X_real)
    lc_fake = -(math.log(0.8) + math.log(0.5)) / 2
    assert float(reg.d_term(b)) == pytest.approx(2.0 * (lc_real + lc_fake))  # D: -(L_C)
    assert float(reg.g_term(b)) == pytest.approx(2.0 * lc_fake)  # G: its half of -L_C
    with pytest.raises(ConfigError, match="labelled dataset"):
        reg.d_term(_batch(Head(), torch.zeros(2, 1), None, f_real, f_fake, fake_c))


@pytest.mark.parametrize("res,chans", [(28, [384, 192, 1]), (32, [384, 192, 96, 3])])
def test_acgan_networks_follow_appendix_b(res, chans):
    c_in = 1 if res == 28 else 3
    G = acgan.Generator((c_in, res, res), num_classes=10)
    D = acgan.Discriminator((c_in, res, res), num_classes=10)
    assert G.fc[0].in_features == 110 and G.fc[0].out_features == 384 * G.start**2
    deconvs = [m for m in G.conv if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in deconvs] == chans[1:]
    assert all(m.kernel_size == (5, 5) and m.stride == (2, 2) for m in deconvs)
    convs = [m for m in D.trunk if isinstance(m, nn.Conv2d)]
    assert [(m.out_channels, m.stride[0]) for m in convs] == [
        (16, 2), (32, 1), (64, 2), (128, 1), (256, 2), (512, 1),
    ]  # fmt: skip
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in D.trunk) == 6
    assert D.source.out_features == 1 and D.classes.out_features == 10
    assert D.source.in_features == 512 * 4 * 4


def test_acgan_g_is_conditional_and_d_predicts_the_class():
    G = acgan.Generator((1, 28, 28), num_classes=3, z_dim=4, width=4).eval()
    D = acgan.Discriminator((1, 28, 28), num_classes=3, width=2).eval()
    z = G.sample_z(1).expand(2, 4)
    x = G(z, torch.tensor([0, 2]))
    assert x.shape == (2, 1, 28, 28) and not torch.allclose(x[0], x[1])
    logits, feats = D.forward_features(x)
    assert torch.equal(D(x, torch.tensor([0, 0])), D(x, torch.tensor([1, 2])))  # c is no input
    assert D.classify(feats).shape == (2, 3) and logits.shape == (2,)
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)


def test_acgan_recipe():
    cfg = compose_config(["model=acgan"])
    assert (
        list(cfg.regularizer) == ["aux_classifier"] and cfg.regularizer.aux_classifier.weight == 1.0
    )
    assert cfg.loss._target_ == "ganrun.losses.NonSaturating"
    assert cfg.optimizer.lr_g == cfg.optimizer.lr_d == pytest.approx(2e-4)
    assert list(cfg.optimizer.betas) == [0.5, 0.999]
    assert cfg.trainer.batch_size == 100 and cfg.model.z_dim == 100 and cfg.model.D.width == 16


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=acgan", "dataset=fake", "dataset.resolution=32"], "needs a labelled dataset"),
        (["model=acgan", "dataset=ring"], "needs image data"),
        (["model=lsgan", "dataset=fake", "dataset.resolution=48"], r"not 48x48"),
        (
            ["model=dcgan", "regularizer=[aux_classifier]", "model.width=4"],
            r"needs a discriminator with a class head \(model=acgan\)",
        ),
    ],
)
def test_bad_combinations_are_one_line_before_building(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build.validate(compose_config(overrides))


@pytest.mark.parametrize(
    "experiment,model,width", [("lsgan_mnist", "lsgan", 32), ("acgan_mnist", "acgan", 48)]
)
def test_cpu_sized_setups_depart_only_in_width(experiment, model, width):
    cpu, recipe = compose_config([f"experiment={experiment}"]), compose_config([f"model={model}"])
    assert cpu.model.width == width and cpu.model.width < recipe.model.width
    assert cpu.optimizer == recipe.optimizer and cpu.loss == recipe.loss
    assert cpu.get("regularizer") == recipe.get("regularizer")
    assert cpu.trainer.batch_size == recipe.trainer.batch_size


# --------------------------------------------------------------------------- the real loop
@pytest.mark.parametrize("model", MODELS)
def test_one_d_and_one_g_step_give_finite_losses(model):
    b = build.build(compose_config(tiny(model)))
    real, real_c = next(iter(b.data.batches(8, seed=0)))
    loss_d, stats_d = b.objective.d_loss(b.G, b.D, real, real_c, step=0)
    loss_d.backward()
    b.opt_d.step()
    b.D.requires_grad_(False)
    loss_g, stats_g = b.objective.g_loss(b.G, b.D, real, real_c, step=0)
    loss_g.backward()
    b.opt_g.step()
    assert math.isfinite(float(loss_d.detach())) and math.isfinite(float(loss_g.detach()))
    names = {"lsgan": None, "dragan": "reg/dragan", "acgan": "reg/aux_classifier"}
    if names[model]:
        assert names[model] in stats_d and float(stats_d[names[model]]) > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in b.G.parameters())


@pytest.mark.parametrize("model", MODELS)
def test_trains_checkpoints_resumes_exactly_and_samples(model, tmp_path):
    assert_resume_is_exact(tmp_path, tiny(model), steps=4, split=2)
    out = tmp_path / "grid.png"
    cfg = compose_config(
        [f"ckpt={tmp_path / 'split'}", "n=4", "nrow=2", "device=cpu", f"out={out}"],
        config_name="sample",
    )
    sample(cfg, out)
    assert out.is_file()
    if model == "acgan":  # one row per class through the installed CLI
        G, _, _ = load_generator(tmp_path / "split", torch.device("cpu"))
        assert G.num_classes == 10 and class_rows(G, 20, "cpu")[:2] == (2, 20)
        rows = tmp_path / "rows.png"
        p = ganrun(
            "sample",
            f"ckpt={tmp_path / 'split'}",
            "n=20",
            "device=cpu",
            f"out={rows}",
            cwd=tmp_path,
        )
        assert p.returncode == 0, p.stderr
        assert Image.open(rows).size == (2 * 30 + 2, 10 * 30 + 2)  # 10 rows of 2 digits

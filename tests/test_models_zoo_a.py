"""Model zoo, first half: cGAN, InfoGAN, WGAN, WGAN-GP, SN-GAN (standard CNN and ResNet).

Shapes, the papers' layer sizes, spectral norm, InfoGAN's mutual-information term,
the recipes as composed, a few steps through the real loop with checkpoint /
resume / sample, the sampling modes, and bad combinations as one clear line.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ganrun import checkpoint as ckpt
from ganrun.build import build_network, build_objective, validate
from ganrun.commands.sample import class_rows, load_generator, sample, traversal_latents
from ganrun.errors import ConfigError
from ganrun.losses import Loss, NonSaturating
from ganrun.models import cgan, dcgan, infogan, sngan
from ganrun.objective import Objective
from tests.conftest import compose_config, run_train, tiny_overrides

# Tiny widths per recipe (and a dataset the architecture serves).
TINY = {
    "cgan": (
        "mnist_embedded",
        ["model.z_dim=8", "model.G.z_hidden=8", "model.G.y_hidden=8", "model.G.joint_hidden=16"]
        + ["model.D.x_units=8", "model.D.y_units=4", "model.D.joint_units=8"],
    ),
    "infogan": (
        "mnist_embedded",
        ["model.width=4", "model.noise_dim=4", "model.G.fc_width=16", "model.D.fc_width=16"]
        + ["model.D.q_width=8"],
    ),
    "wgan": ("mnist_embedded", ["model.width=4", "model.z_dim=8", "trainer.n_critic=2"]),
    "wgan_gp": ("mnist_embedded", ["model.width=4", "model.z_dim=8", "trainer.n_critic=1"]),
    "sngan": ("fake", ["model.width=2", "model.z_dim=8"]),
    "sngan_resnet": (
        "fake",
        ["model.G.width=4", "model.D.width=4", "model.z_dim=8", "trainer.n_critic=1"],
    ),
}
FAKE_32 = ["dataset.resolution=32", "dataset.size=32"]


def tiny(model: str, *extra: str) -> list[str]:
    """conftest's tiny run (3 steps, checkpoints at 2 and 3), batch 8; the recipes'
    own n_critic and batch size are checked by the recipe tests below."""
    dataset, sizes = TINY[model]
    data = FAKE_32 if dataset == "fake" else []
    return tiny_overrides(
        model, dataset, *data, *sizes, "trainer.batch_size=8", "logger.tensorboard=false", *extra
    )


_trained: dict[str, Path] = {}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run dir of a model trained 3 steps at tiny width (trained once per module)."""

    def get(model: str) -> Path:
        if model not in _trained:
            run_dir = tmp_path_factory.mktemp(model)
            run_train(run_dir, tiny(model))
            _trained[model] = run_dir
        return _trained[model]

    yield get
    _trained.clear()


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (2,)])
def test_cgan_shapes(shape):
    torch.manual_seed(0)  # tiny random nets: a few draws leave two labels' features equal
    G = cgan.Generator(shape, num_classes=3, z_dim=8, z_hidden=8, y_hidden=4, joint_hidden=8)
    D = cgan.Discriminator(shape, num_classes=3, x_units=6, y_units=4, joint_units=5)
    c = torch.tensor([0, 1, 2, 1])
    x = G(G.sample_z(4), c)
    assert x.shape == (4, *shape)
    logits, feats = D.forward_features(x, c)
    assert logits.shape == (4,) and feats.shape == (4, 5)
    G.eval(), D.eval()  # no dropout: the label alone changes the output
    same_z, same_x = torch.zeros(2, 8), x[:1].expand(2, *shape)
    two = torch.tensor([0, 1])
    assert not torch.allclose(G(same_z, two)[0], G(same_z, two)[1])
    assert D(same_x, two)[0] != D(same_x, two)[1]


@pytest.mark.parametrize("res", [28, 32])
def test_infogan_shapes_and_latent_layout(res):
    G = infogan.Generator((1, res, res), noise_dim=5, categorical=[4, 3], continuous=2, width=4)
    D = infogan.Discriminator((1, res, res), categorical=[4, 3], continuous=2, width=4)
    z = G.sample_z(64)
    assert z.shape == (64, 5 + 4 + 3 + 2) and G.z_dim == 14
    noise, one_hots, cont = G.split_latent(z)
    assert noise.shape == (64, 5) and [o.shape[1] for o in one_hots] == [4, 3]
    assert all(
        torch.equal(o.sum(1), torch.ones(64)) and set(o.unique().tolist()) <= {0.0, 1.0}
        for o in one_hots
    )
    assert len(one_hots[0].argmax(1).unique()) == 4  # every category drawn in 64 samples
    assert cont.shape == (64, 2) and cont.abs().max() <= 1.0
    x = G(z)
    assert x.shape == (64, 1, res, res) and x.abs().max() <= 1.0
    logits, feats = D.forward_features(x)
    assert logits.shape == (64,)
    cat_logits, mean, log_std = D.q_posterior(feats)
    assert [t.shape for t in cat_logits] == [(64, 4), (64, 3)]
    assert mean.shape == (64, 2) and log_std is None
    D2 = infogan.Discriminator(
        (1, res, res), categorical=[4, 3], continuous=2, width=4, learn_std=True
    )
    assert D2.q_posterior(D2.forward_features(x)[1])[2].shape == (64, 2)


@pytest.mark.parametrize("res", [32, 48, 64])
def test_sngan_standard_cnn_shapes(res):
    G = sngan.Generator((3, res, res), z_dim=8, width=2)
    D = sngan.Discriminator((3, res, res), width=2)
    x = G(G.sample_z(2))
    assert x.shape == (2, 3, res, res) and x.abs().max() <= 1.0
    logits, feats = D.forward_features(x)
    assert logits.shape == (2,) and feats.shape == (2, 16 * (res // 8) ** 2)


def test_sngan_resnet_shapes():
    G = sngan.ResNetGenerator((3, 32, 32), z_dim=8, width=8)
    D = sngan.ResNetDiscriminator((3, 32, 32), width=8)
    x = G(G.sample_z(2))
    assert x.shape == (2, 3, 32, 32)
    logits, feats = D.forward_features(x)
    assert logits.shape == (2,) and feats.shape == (2, 8)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_dcgan_critic_norm(norm):
    D = dcgan.Discriminator((3, 32, 32), width=4, norm=norm)
    kinds = {type(m) for m in D.modules()}
    assert (torch.nn.BatchNorm2d in kinds) == (norm == "batch")
    assert (torch.nn.GroupNorm in kinds) == (norm == "layer")
    x = torch.randn(3, 3, 32, 32)
    if norm != "batch":  # no batch norm: each sample's score is independent of the others
        D.train()
        assert torch.allclose(D(x)[:1], D(x[:1]), atol=1e-6)
    with pytest.raises(ConfigError, match="norm='group' is not valid"):
        dcgan.Discriminator((3, 32, 32), norm="group")


def test_a_layer_norm_critic_sees_image_contrast():
    """Bias-free convs, leaky ReLUs and a layer norm make D(a*x) = D(x) for all a > 0: such a
    critic cannot tell a digit from a faded copy of it, and WGAN-GP's G drew grey images at
    32 px. Without batch norm the convs keep their biases (as the authors' critics), so once
    training moves them, contrast changes the score."""
    torch.manual_seed(0)
    for norm in ("layer", "none"):
        convs = [
            m
            for m in dcgan.Discriminator((1, 32, 32), norm=norm).trunk
            if isinstance(m, torch.nn.Conv2d)
        ]
        assert convs and all(m.bias is not None for m in convs), norm
    D = dcgan.Discriminator((1, 32, 32), width=4, norm="layer")
    convs = [m for m in D.trunk if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for m in convs:
            m.bias.normal_(0.0, 0.1)  # what a few critic steps do to the zero-initialised biases
    x = torch.randn(4, 1, 32, 32)
    assert (D(x) - D(0.3 * x)).abs().min() > 1e-3


# --------------------------------------------------------------------------- the papers' sizes
def test_cgan_sizes_follow_the_paper():
    G = cgan.Generator((1, 28, 28), num_classes=10)
    D = cgan.Discriminator((1, 28, 28), num_classes=10)
    lin = [m for m in G.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [
        (100, 200),
        (10, 1000),
        (1200, 1200),
        (1200, 784),
    ]
    maxouts = [(m.units, m.pieces) for m in D.modules() if isinstance(m, cgan.Maxout)]
    assert maxouts == [(240, 5), (50, 5), (240, 4)]
    assert {m.p for m in D.modules() if isinstance(m, torch.nn.Dropout)} >= {0.5}
    assert {m.p for m in G.modules() if isinstance(m, torch.nn.Dropout)} == {0.5}


def test_cgan_discriminator_init_ranges():
    torch.manual_seed(0)
    D = cgan.Discriminator((1, 28, 28), num_classes=10)
    weights = [m.weight for m in D.modules() if isinstance(m, torch.nn.Linear)]
    assert max(w.abs().max().item() for w in weights) <= 0.005
    D = cgan.Discriminator((1, 28, 28), num_classes=10, y_irange=0.05)
    y_w = D.y_path[0].linear.weight
    assert 0.04 < y_w.abs().max().item() <= 0.05  # the label pathway's own range
    assert D.x_path[2].linear.weight.abs().max().item() <= 0.005  # the rest keeps irange
    with pytest.raises(ConfigError, match="y_irange"):
        cgan.Discriminator((1, 28, 28), num_classes=10, y_irange=0.0)


def test_cgan_discriminator_can_see_unit_pixels():
    torch.manual_seed(0)
    D = cgan.Discriminator((1, 8, 8), num_classes=3, x_units=6, y_units=4, joint_units=5).eval()
    U = cgan.Discriminator(
        (1, 8, 8), num_classes=3, x_units=6, y_units=4, joint_units=5, unit_pixels=True
    ).eval()
    U.load_state_dict(D.state_dict())
    x, c = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2, 0])
    assert torch.allclose(U(x, c), D((x + 1) / 2, c))
    assert not torch.allclose(U(x, c), D(x, c))


def test_the_cgan_recipe_takes_the_reference_codes_pixels_and_input_dropout():
    # Without these two D ignored the label on the digits (docs/RESULTS.md, cgan finding).
    cfg = compose_config(["model=cgan"])
    D = build_network(cfg.model.D, (1, 28, 28), 10)
    assert D.unit_pixels is True
    assert D.x_path[1].p == 0.2
    assert build_network(cfg.model.D, (2,), 4).unit_pixels is False  # points stay as they are


def test_infogan_sizes_follow_table_1():
    G = infogan.Generator((1, 28, 28))
    D = infogan.Discriminator((1, 28, 28))
    assert G.z_dim == 74 and G.categorical == (10,) and G.continuous == 2
    g_lin = [m.out_features for m in G.modules() if isinstance(m, torch.nn.Linear)]
    assert g_lin == [1024, 7 * 7 * 128]
    assert [m.out_channels for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)] == [
        64,
        1,
    ]
    assert [m.out_channels for m in D.trunk if isinstance(m, torch.nn.Conv2d)] == [64, 128]
    assert [m.out_features for m in D.trunk if isinstance(m, torch.nn.Linear)] == [1024]
    assert [m.out_features for m in D.q if isinstance(m, torch.nn.Linear)] == [128, 10 + 2]
    assert {m.negative_slope for m in D.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.1}


def test_sngan_layers_follow_table_3():
    D = sngan.Discriminator((3, 32, 32))
    convs = [m for m in D.trunk if isinstance(m, torch.nn.Conv2d)]
    got = [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs]
    assert got == [
        (64, 3, 1),
        (64, 4, 2),
        (128, 3, 1),
        (128, 4, 2),
        (256, 3, 1),
        (256, 4, 2),
        (512, 3, 1),
    ]
    assert {m.negative_slope for m in D.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.1}
    G = sngan.Generator((3, 32, 32))
    assert G.dense[0].out_features == 4 * 4 * 512
    assert [m.out_channels for m in G.conv if isinstance(m, torch.nn.ConvTranspose2d)] == [
        256,
        128,
        64,
    ]


def _weighted(module):
    return [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


@pytest.mark.parametrize(
    "D",
    [
        lambda: sngan.Discriminator((3, 32, 32), width=4),
        lambda: sngan.ResNetDiscriminator((3, 32, 32), width=8),
    ],
)
def test_spectral_norm_on_every_d_layer_and_sigma_is_one(D):
    torch.manual_seed(0)
    D = D().train()
    layers = _weighted(D)
    assert layers and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    D(torch.randn(2, 3, 32, 32))  # a training forward pass runs one power iteration per layer
    for _ in range(100):  # so does each read of an SN weight in training mode
        for m in layers:
            _ = m.weight
    D.eval()
    for m in layers:
        w = m.weight.detach().reshape(m.weight.shape[0], -1)  # the effective W / sigma(W)
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=2e-3)
        raw = m.parametrizations.weight.original.detach().reshape(w.shape[0], -1)
        assert torch.linalg.matrix_norm(raw, ord=2).item() != pytest.approx(1.0, abs=1e-2)


def test_generators_have_no_spectral_norm():
    for G in (sngan.Generator((3, 32, 32), width=2), sngan.ResNetGenerator((3, 32, 32), width=8)):
        assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in G.modules())


# --------------------------------------------------------------------------- InfoGAN's MI term
def test_mi_term_known_answer():
    G = infogan.Generator((1, 28, 28), noise_dim=3, categorical=[2], continuous=1, width=4)
    z = torch.tensor([[0.1, 0.2, 0.3, 0.0, 1.0, 1.0]])  # noise | one-hot: category 1 | c = 1

    class FixedQ:
        def q_posterior(self, features):
            # logits (0, ln 3): Q(category 1) = 3/4; mean 0, std 2
            return (
                [torch.tensor([[0.0, math.log(3.0)]])],
                torch.zeros(1, 1),
                torch.full((1, 1), math.log(2.0)),
            )

    ce = math.log(4 / 3)
    nll = 0.5 * math.log(2 * math.pi) + math.log(2.0) + 0.5 * (1 / 2) ** 2
    reg = infogan.MutualInformation(categorical_weight=1.0, continuous_weight=0.5)
    assert reg.term(G, FixedQ(), z, torch.zeros(1, 1)).item() == pytest.approx(
        ce + 0.5 * nll, rel=1e-6
    )
    assert infogan.categorical_nll(
        torch.tensor([[0.0, math.log(3.0)]]), z[:, 3:5]
    ).item() == pytest.approx(ce)
    assert infogan.gaussian_nll(torch.ones(1, 1), torch.zeros(1, 1)).item() == pytest.approx(
        0.5 * math.log(2 * math.pi) + 0.5
    )


def test_mi_term_refuses_a_model_without_codes():
    G, D = dcgan.Generator((1, 28, 28), width=4), dcgan.Discriminator((1, 28, 28), width=4)
    with pytest.raises(ConfigError, match="model=infogan"):
        infogan.MutualInformation().term(G, D, G.sample_z(2), torch.zeros(2, 3))


class _NoAdversarialLoss(Loss):
    """Zero adversarial loss: whatever gets a gradient gets it from the MI term."""

    def d(self, real, fake):
        return 0.0 * (real.sum() + fake.sum())

    def g(self, fake):
        return 0.0 * fake.sum()


def test_mi_trains_q_in_the_d_phase_and_g_in_the_g_phase():
    torch.manual_seed(0)
    G = infogan.Generator((1, 28, 28), noise_dim=4, width=4, fc_width=16)
    D = infogan.Discriminator((1, 28, 28), width=4, fc_width=16, q_width=8)
    obj = Objective(_NoAdversarialLoss(), {"info": infogan.MutualInformation()})
    real = torch.rand(8, 1, 28, 28) * 2 - 1

    loss, stats = obj.d_loss(G, D, real, None, step=0)
    assert stats["reg/info"] > 0
    loss.backward()
    q_grad = sum(p.grad.abs().sum() for p in D.q.parameters())
    trunk_grad = sum(p.grad.abs().sum() for p in D.trunk.parameters() if p.grad is not None)
    assert q_grad > 0 and trunk_grad > 0  # Q and the shared trunk learn from the D phase
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in D.head.parameters())
    assert all(p.grad is None for p in G.parameters())  # fakes were drawn without a graph

    D.zero_grad(set_to_none=True)
    D.requires_grad_(False)  # as the loop does in the G phase
    loss, _ = obj.g_loss(G, D, real, None, step=0)
    loss.backward()
    assert sum(p.grad.abs().sum() for p in G.parameters() if p.grad is not None) > 0
    assert all(p.grad is None for p in D.parameters())


# --------------------------------------------------------------------------- recipes
def _resolved(overrides):
    return OmegaConf.to_container(compose_config(overrides), resolve=True)


def test_wgan_gp_recipe():
    cfg = _resolved(["model=wgan_gp"])
    assert cfg["loss"]["_target_"] == "ganrun.losses.Wasserstein"
    assert list(cfg["regularizer"]) == ["gp"] and cfg["regularizer"]["gp"]["weight"] == 10.0
    opt = cfg["optimizer"]
    assert opt["_target_"] == "ganrun.optim.Adam" and opt["betas"] == [0.0, 0.9]
    assert opt["lr_g"] == opt["lr_d"] == 1e-4
    assert cfg["trainer"]["n_critic"] == 5 and cfg["trainer"]["batch_size"] == 64
    assert cfg["model"]["D"]["norm"] == "layer"


def test_wgan_recipe():
    cfg = _resolved(["model=wgan"])
    assert cfg["loss"]["_target_"] == "ganrun.losses.Wasserstein"
    assert (
        list(cfg["regularizer"]) == ["weight_clip"]
        and cfg["regularizer"]["weight_clip"]["clip"] == 0.01
    )
    assert cfg["optimizer"]["_target_"] == "ganrun.optim.RMSprop"
    assert cfg["optimizer"]["lr_g"] == cfg["optimizer"]["lr_d"] == 5e-5
    assert cfg["trainer"]["n_critic"] == 5 and cfg["trainer"]["batch_size"] == 64
    assert cfg["model"]["D"]["norm"] == "batch"


@pytest.mark.parametrize(
    "model,betas,n_critic", [("sngan", [0.5, 0.999], 1), ("sngan_resnet", [0.0, 0.9], 5)]
)
def test_sngan_recipes(model, betas, n_critic):
    cfg = _resolved([f"model={model}"])
    assert cfg["loss"]["_target_"] == "ganrun.losses.Hinge"
    assert cfg["regularizer"] == {}
    assert cfg["optimizer"]["betas"] == betas and cfg["optimizer"]["lr_d"] == 2e-4
    assert cfg["trainer"]["n_critic"] == n_critic and cfg["trainer"]["batch_size"] == 64
    assert cfg["model"]["D"]["spectral_norm"] is True


def test_infogan_and_cgan_recipes():
    info = _resolved(["model=infogan"])
    assert list(info["regularizer"]) == ["info"]
    assert info["regularizer"]["info"]["categorical_weight"] == 1.0
    lam = _resolved(["model=infogan", "model.recipe.regularizer.info.continuous_weight=0.1"])
    assert lam["regularizer"]["info"]["continuous_weight"] == 0.1  # the recipe feeds info.yaml
    assert (info["optimizer"]["lr_g"], info["optimizer"]["lr_d"]) == (1e-3, 2e-4)
    cg = _resolved(["model=cgan"])
    assert cg["optimizer"]["_target_"] == "ganrun.optim.SGD"
    assert cg["optimizer"]["decay_factor"] == 1.00004 and cg["optimizer"]["min_lr"] == 1e-6
    assert cg["trainer"]["batch_size"] == 100


def test_command_line_group_wins_and_recipe_values_do_not_leak():
    cfg = _resolved(["model=wgan_gp", "optimizer=sgd", "regularizer=[r1]"])
    assert cfg["optimizer"]["_target_"] == "ganrun.optim.SGD" and "betas" not in cfg["optimizer"]
    assert list(cfg["regularizer"]) == ["r1"]


# --------------------------------------------------------------------------- the real loop
def _sample_cfg(*overrides):
    return compose_config(list(overrides), config_name="sample")


@pytest.mark.parametrize("model", list(TINY))
def test_trains_checkpoints_resumes_and_samples(model, trained, tmp_path):
    run_dir = trained(model)
    _, state = ckpt.load(run_dir)
    assert state["step"] == 3 and state["config"]["model"]["name"] == model
    assert all(
        torch.isfinite(v).all() for v in state["models"]["G"].values() if v.is_floating_point()
    )
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    _, result = run_train(resumed, tiny(model, "trainer.steps=4", f"resume={resumed}"))
    assert ckpt.load(resumed)[1]["step"] == 4
    assert all(math.isfinite(v) for k, v in result.items() if k.startswith(("loss/", "reg/")))
    out = tmp_path / "grid.png"
    sample(_sample_cfg(f"ckpt={run_dir}", "n=4", "nrow=2", "device=cpu", f"out={out}"), out)
    assert out.is_file()


def test_cgan_samples_one_row_per_class(trained, tmp_path):
    from PIL import Image

    run_dir = trained("cgan")
    G, _, _ = load_generator(run_dir, torch.device("cpu"))
    cols, n, labels = class_rows(G, 25, "cpu")
    assert (cols, n) == (2, 20) and labels.tolist() == [k for k in range(10) for _ in range(2)]
    assert class_rows(G, 7, "cpu") is None  # fewer samples than classes: sample i is of class i
    out = tmp_path / "rows.png"
    sample(_sample_cfg(f"ckpt={run_dir}", "n=25", "device=cpu", f"out={out}"), out)
    assert Image.open(out).size == (2 * 30 + 2, 10 * 30 + 2)  # 10 rows of 2 (28 px + 2 padding)
    out = tmp_path / "class3.png"
    sample(
        _sample_cfg(f"ckpt={run_dir}", "n=4", "nrow=4", "class_idx=3", "device=cpu", f"out={out}"),
        out,
    )
    assert Image.open(out).size == (4 * 30 + 2, 1 * 30 + 2)
    with pytest.raises(ConfigError, match="class_idx=10 is not a class; choose 0..9"):
        sample(_sample_cfg(f"ckpt={run_dir}", "class_idx=10", "device=cpu", f"out={out}"), out)
    with pytest.raises(ConfigError, match="traverse=true needs a model with latent codes"):
        sample(_sample_cfg(f"ckpt={run_dir}", "traverse=true", "device=cpu", f"out={out}"), out)


def test_infogan_traversal(trained, tmp_path):
    run_dir = trained("infogan")
    G, _, _ = load_generator(run_dir, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    z, c, cols = traversal_latents(
        G, _sample_cfg("ckpt=x", "n=20", "traverse=true", "code=0"), gen, "cpu"
    )
    assert c is None and cols == 10 and z.shape == (20, G.z_dim)
    noise, (one_hot,), cont = G.split_latent(z.view(2, 10, -1).flatten(0, 1))
    grid = lambda t: t.view(2, 10, -1)  # noqa: E731
    assert torch.equal(
        grid(one_hot).argmax(-1), torch.arange(10).repeat(2, 1)
    )  # code 0 along columns
    assert torch.equal(grid(noise), grid(noise)[:, :1].expand_as(grid(noise)))  # z fixed per row
    assert torch.equal(grid(cont), grid(cont)[:, :1].expand_as(grid(cont)))  # other codes too
    assert not torch.equal(grid(noise)[0], grid(noise)[1])  # rows differ

    cfg = _sample_cfg("ckpt=x", "n=10", "traverse=true", "code=2", "steps=5", "traverse_range=1.5")
    z, _, cols = traversal_latents(G, cfg, gen, "cpu")
    _, (one_hot,), cont = G.split_latent(z)
    assert cols == 5
    assert torch.allclose(cont[:, 1].view(2, 5), torch.linspace(-1.5, 1.5, 5).repeat(2, 1))
    assert torch.equal(cont[:, 0].view(2, 5), cont[:, 0].view(2, 5)[:, :1].expand(2, 5))

    for bad, msg in [
        (["code=3"], "code=3 is not a latent code of this model; choose 0=categorical"),
        (["class_idx=1"], "class_idx needs a class-conditional model"),
        (["per_image=true"], "traverse=true draws its own grid"),
    ]:
        out = tmp_path / "t.png"
        with pytest.raises(ConfigError, match=msg):
            sample(
                _sample_cfg(f"ckpt={run_dir}", "traverse=true", *bad, "device=cpu", f"out={out}"),
                out,
            )


# --------------------------------------------------------------------------- bad combinations
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=cgan", "dataset=ring"], "needs a labelled dataset"),
        (
            ["model=sngan", "dataset=mnist_embedded", "dataset.resolution=28"],
            r"supports dataset.resolution in \{32, 48, 64\}, not 28x28",
        ),
        (
            ["model=sngan_resnet", "dataset=fake", "dataset.resolution=64"],
            r"supports dataset.resolution in \{32\}, not 64x64",
        ),
        (["model=infogan", "dataset=ring"], "needs image data"),
        (["model=wgan_gp", "model.D.norm=group"], "model.D.norm='group' is not valid"),
        (["model=infogan", "model.categorical=[1]"], "each code needs >= 2 categories"),
    ],
)
def test_bad_combinations_fail_before_building(overrides, message):
    """Refused by ``validate`` (what the CLI's preflight runs) or, for values only a
    constructor can judge, by ``build`` before any step: a ConfigError either way."""
    from ganrun.build import build

    cfg = compose_config(overrides)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
        build(cfg)


def test_info_regularizer_on_another_model_is_one_line(tmp_path):
    cfg = compose_config(
        tiny_overrides("dcgan", "mnist_embedded", "regularizer=[info]", "model.width=4")
    )
    # refused by validate, i.e. before Hydra creates a run dir
    with pytest.raises(ConfigError, match=r"regularizer=info needs .* \(model=infogan\)"):
        validate(cfg)
    validate(compose_config(tiny_overrides("infogan", "mnist_embedded")))


def test_build_objective_makes_the_info_regularizer():
    obj = build_objective(compose_config(["model=infogan"]), num_classes=0)
    assert isinstance(obj.loss, NonSaturating)
    assert isinstance(obj.regularizers["info"], infogan.MutualInformation)


def _ganrun(*args, cwd):
    exe = Path(sys.executable).with_name("ganrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=env
    )


def test_cli_refuses_cgan_on_unlabelled_data(tmp_path):
    p = _ganrun("train", "model=cgan", "dataset=ring", cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cgan" in lines[0] and "labelled dataset" in lines[0], p.stderr
    assert not (tmp_path / "outputs").exists()


def test_cli_samples_an_infogan_traversal(trained, tmp_path):
    out = tmp_path / "traverse.png"
    p = _ganrun("sample", f"ckpt={trained('infogan')}", "traverse=true", "code=1", "n=6", "steps=3",
                "device=cpu", f"out={out}", cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert out.is_file()

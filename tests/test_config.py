"""The config tree: every option composes and builds; recipes; bad input."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ganrun import build
from ganrun.errors import ConfigError, DataError
from ganrun.paths import config_groups, group_options
from tests.conftest import TINY_MODEL, compose_config, tiny_overrides

GROUPS = ["model", "loss", "optimizer", "dataset", "trainer", "logger", "augment"]


def test_groups_exist():
    assert set(GROUPS) <= set(config_groups())
    assert {"vanilla", "dcgan"} <= set(group_options("model"))
    assert {"minimax", "nonsaturating"} <= set(group_options("loss"))
    assert {"sgd", "adam"} <= set(group_options("optimizer"))
    assert {
        "mnist_embedded",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "celeba",
        "image_folder",
        "ring",
        "grid",
        "fake",
    } <= set(group_options("dataset"))


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "model"])
def test_every_option_composes_and_builds(group, tmp_path):
    for option in group_options(group):
        extra = (
            [f"dataset.root={tmp_path}"] if (group, option) == ("dataset", "image_folder") else []
        )
        cfg = compose_config([f"{group}={option}", *extra])
        node = cfg[group]
        OmegaConf.to_container(node, resolve=True)  # every interpolation resolves
        if group == "dataset":
            data = build.build_dataset(cfg)
            assert len(data.data_shape) in (1, 3)
        elif group == "loss":
            loss = build.build_objective(cfg, 0).loss
            assert torch.isfinite(loss.d(torch.zeros(3), torch.zeros(3)))
        elif group == "optimizer":
            recipe = build.build_optimizer(cfg)
            params = [torch.nn.Parameter(torch.zeros(2))], [torch.nn.Parameter(torch.zeros(2))]
            opt_g, opt_d = recipe.build(*params)
            assert opt_g.param_groups[0]["lr"] == pytest.approx(recipe.lr_g)
        else:
            build.validate(cfg)


def test_every_model_has_a_tiny_test_size():
    assert set(group_options("model")) == set(TINY_MODEL)


@pytest.mark.parametrize("model", group_options("model"))
def test_every_model_recipe_validates_and_builds(model):
    """The recipe as shipped validates on its default data (the paper's sizes),
    and a tiny version builds and runs G and D once."""
    dataset = "ring" if model == "pacgan_mlp" else "mnist_embedded"
    build.validate(compose_config([f"model={model}", f"dataset={dataset}"]))
    cfg = compose_config([f"model={model}", f"dataset={dataset}", *TINY_MODEL[model]])
    build.validate(cfg)
    data = build.build_dataset(cfg)
    G, D = build.build_models(cfg, data.data_shape, data.num_classes)
    n = 4
    z = G.sample_z(n)
    c = torch.arange(n) % data.num_classes if data.num_classes else None
    x = G(z, c)
    assert x.shape == (n, *data.data_shape)
    assert D(x, c).shape[0] in (n, n // getattr(D, "pack", 1))


@pytest.mark.parametrize("model", group_options("model"))
@pytest.mark.parametrize("optimizer", group_options("optimizer"))
def test_any_optimizer_with_any_model(model, optimizer):
    # a recipe's optimizer values never leak into another optimizer
    dataset = "ring" if model == "pacgan_mlp" else "mnist_embedded"
    build.validate(
        compose_config([f"model={model}", f"optimizer={optimizer}", f"dataset={dataset}"])
    )


def test_default_is_dcgan_on_embedded_mnist():
    cfg = compose_config([])
    assert cfg.model.name == "dcgan"
    assert cfg.dataset._target_.endswith("EmbeddedMNIST")
    assert cfg.loss._target_.endswith("NonSaturating")


def test_recipe_selects_its_papers_loss_optimizer_and_schedule():
    cfg = compose_config(["model=vanilla"])
    assert cfg.loss._target_ == "ganrun.losses.NonSaturating"
    assert cfg.optimizer._target_ == "ganrun.optim.SGD"
    assert cfg.optimizer.lr_g == pytest.approx(0.1) and cfg.optimizer.lr_d == pytest.approx(0.05)
    assert cfg.optimizer.momentum_final == pytest.approx(0.7)
    assert cfg.trainer.batch_size == 100 and cfg.trainer.n_critic == 1
    cfg = compose_config(["model=dcgan"])
    assert cfg.optimizer._target_ == "ganrun.optim.Adam"
    assert list(cfg.optimizer.betas) == [0.5, 0.999] and cfg.optimizer.lr_g == pytest.approx(2e-4)
    assert cfg.trainer.batch_size == 64  # a departure from the paper's 128 (conf/model/dcgan.yaml)


def test_command_line_group_wins_over_recipe():
    cfg = compose_config(["model=dcgan", "loss=minimax", "optimizer=sgd"])
    assert cfg.loss._target_ == "ganrun.losses.Minimax"
    assert cfg.optimizer._target_ == "ganrun.optim.SGD"
    # the recipe's Adam settings do not leak into another optimizer
    assert "betas" not in cfg.optimizer
    build.validate(cfg)


def test_command_line_value_wins_over_recipe():
    cfg = compose_config(["model=dcgan", "optimizer.lr_g=1e-3", "trainer.batch_size=32"])
    assert cfg.optimizer.lr_g == pytest.approx(1e-3) and cfg.optimizer.lr_d == pytest.approx(2e-4)
    assert cfg.trainer.batch_size == 32


def test_unknown_trainer_key_fails_at_compose():
    with pytest.raises(Exception, match="foo"):
        compose_config(["trainer.foo=1"])


def test_wrong_type_fails_at_compose():
    with pytest.raises(Exception, match="steps"):
        compose_config(["trainer.steps=abc"])


def test_unknown_model_key_fails_validation():
    cfg = compose_config(["+model.G.depth=3"])
    with pytest.raises(
        ConfigError, match=r"model\.G\.depth is not a parameter of Generator; valid: .*width"
    ):
        build.validate(cfg)


def test_wrong_type_in_target_node_fails_validation():
    cfg = compose_config(["model.width=wide"])
    with pytest.raises(
        ConfigError, match=r"model\.G\.width='wide' has the wrong type: Generator expects int"
    ):
        build.validate(cfg)


def test_injected_key_in_yaml_is_refused():
    cfg = compose_config(["+model.G.data_shape=[1,28,28]"])
    with pytest.raises(ConfigError, match="set by ganrun from the dataset"):
        build.validate(cfg)


@pytest.mark.parametrize(
    "overrides,res",
    [
        ([], 32),  # the default run: dcgan's min_resolution raises the 28 px digits to 32
        (["dataset=mnist"], 32),
        (["dataset=celeba"], 64),  # a floor, not a size: 64 px data stays 64
        (["dataset=cifar10"], 32),
        (["dataset.resolution=28"], 28),  # the command line wins
        (["model=wgan_gp"], 32),  # wgan_gp has dcgan's floor (conf/model/wgan_gp.yaml)
        (["model=ebgan"], 32),  # so has ebgan (conf/model/ebgan.yaml)
        (["model=wgan"], 28),  # recipes without a floor keep the native size
        (["model=sngan", "dataset=celeba"], 32),  # a recipe's resolution is a size
        (["dataset=stacked_mnist"], 28),  # the PacGAN protocol's fixed 28 px
    ],
)
def test_a_recipes_min_resolution_raises_the_native_size(overrides, res):
    assert compose_config(overrides).dataset.resolution == res


@pytest.mark.parametrize("res", [16, 48, 128])
def test_unsupported_resolution_names_the_valid_ones(res):
    cfg = compose_config(["model=dcgan", f"dataset.resolution={res}"])
    with pytest.raises(ConfigError, match=r"supports dataset.resolution in \{28, 32, 64\}"):
        build.validate(cfg)


def test_missing_mandatory_value():
    cfg = compose_config(["dataset=image_folder"])
    with pytest.raises(ConfigError, match="dataset.root is required"):
        build.validate(cfg)


def test_missing_data_folder():
    cfg = compose_config(["dataset=image_folder", "dataset.root=/no/such/folder"])
    with pytest.raises(DataError, match="is not a folder"):
        build.validate(cfg)


def test_bad_values_are_refused():
    for overrides, pattern in [
        (["trainer.steps=0"], "trainer.steps must be >= 1"),
        (["trainer.ema_decay=0.99", "trainer.ema_halflife_kimg=10"], "not both"),
        (["trainer.device=tpu"], "not a device"),
        (["optimizer.betas=[0.5]"], "two numbers"),
        (["dataset.channels=2"], "channels must be 1 or 3"),
    ]:
        cfg = compose_config(overrides)
        with pytest.raises(ConfigError, match=pattern):
            build.build(cfg)


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA device"):
        build.resolve_device("cuda")


def test_tiny_overrides_build_on_cpu():
    b = build.build(compose_config(tiny_overrides("vanilla", "ring")))
    assert b.device.type == "cpu"
    assert b.G.data_shape == (2,)


def test_ema_halflife_formula():
    cfg = compose_config(["trainer.ema_halflife_kimg=10", "trainer.batch_size=64"])
    beta = build.ema_decay(cfg.trainer)
    # after 10 kimg = 156.25 steps of 64, the old weights' share halves
    assert beta ** (10_000 / 64) == pytest.approx(0.5)


def test_dataset_num_classes_is_a_dataset_setting():
    # num_classes is injected into models, but the fake dataset takes it as its own argument
    cfg = compose_config(["dataset=fake", "dataset.num_classes=4", "dataset.resolution=32"])
    build.validate(cfg)
    assert build.build_dataset(cfg).num_classes == 4

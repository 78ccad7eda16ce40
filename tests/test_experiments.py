"""conf/experiment/: whole measured setups (docs/RESULTS.md) applied with one choice."""

from __future__ import annotations

import json

import pytest
import torch

from ganrun import build, checkpoint
from ganrun.paths import group_options
from tests.conftest import TINY_MODEL, TINY_TRAINER, compose_config, run_train


def test_the_measured_setups_ship():
    assert {"ring_modes", "grid_modes", "stacked_mnist_modes"} <= set(group_options("experiment"))


def test_no_experiment_by_default():
    cfg = compose_config([])
    assert cfg.model.name == "dcgan" and cfg.trainer.steps == 3000


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    build.validate(cfg)
    if experiment.endswith("_modes"):  # a mode-coverage setup
        assert list(cfg.eval.metrics) == ["modes"]
    else:  # <model>_mnist: a recipe sized for a CPU, on the embedded digits
        model = experiment.removesuffix("_mnist")
        assert cfg.model.name == model
        assert cfg.dataset._target_ == "ganrun.data.embedded.EmbeddedMNIST"


def test_wgan_mnist_departs_from_the_recipe_only_in_size():
    cpu, recipe = compose_config(["experiment=wgan_mnist"]), compose_config(["model=wgan"])
    assert cpu.model.width == 32 and recipe.model.width == 64
    assert cpu.optimizer == recipe.optimizer and cpu.regularizer == recipe.regularizer
    for key in ("batch_size", "n_critic", "n_critic_warmup", "n_critic_warmup_steps"):
        assert cpu.trainer[key] == recipe.trainer[key], key


def test_ring_modes_is_the_recipe_that_met_the_ring_goal():
    cfg = compose_config(["experiment=ring_modes"])
    assert cfg.model.name == "pacgan_mlp" and cfg.model.pack == 4
    assert cfg.dataset._target_ == "ganrun.data.toy.Ring"
    assert cfg.optimizer.schedule == "linear"
    assert cfg.optimizer.lr_g == pytest.approx(1e-4) and cfg.optimizer.lr_d == pytest.approx(1e-4)
    assert cfg.trainer.steps == 40000 and cfg.trainer.batch_size == 400


def test_grid_modes_is_the_tuned_pacgan4():
    cfg = compose_config(["experiment=grid_modes"])
    assert cfg.model.name == "pacgan_mlp" and cfg.model.pack == 4
    assert cfg.dataset._target_ == "ganrun.data.toy.Grid"
    # the deviations its comment lists: TTUR (lr_d 10x), two D steps, linear decay, EMA
    assert cfg.optimizer.lr_g == pytest.approx(1e-4) and cfg.optimizer.lr_d == pytest.approx(1e-3)
    assert cfg.optimizer.betas == [0.8, 0.999]  # the rest of the paper's Adam is kept
    assert cfg.optimizer.schedule == "linear"
    assert cfg.trainer.n_critic == 2 and cfg.trainer.ema_decay == pytest.approx(0.999)
    assert cfg.trainer.steps == 20000 and cfg.trainer.batch_size == 400


def test_the_command_line_wins_over_an_experiment():
    cfg = compose_config(
        ["experiment=ring_modes", "optimizer.schedule=constant", "trainer.steps=7", "dataset=grid"]
    )
    assert cfg.optimizer.schedule == "constant" and cfg.trainer.steps == 7
    assert cfg.dataset._target_ == "ganrun.data.toy.Grid"
    # swapping the optimizer drops the experiment's Adam schedule with the recipe's values
    cfg = compose_config(["experiment=ring_modes", "optimizer=sgd"])
    plain = compose_config(["model=pacgan_mlp", "dataset=ring", "optimizer=sgd"])
    assert cfg.optimizer._target_ == "ganrun.optim.SGD"
    assert cfg.optimizer.schedule == plain.optimizer.schedule != "linear"


def test_an_experiment_trains_and_counts_modes(tmp_path):
    overrides = [
        "experiment=ring_modes",
        *TINY_MODEL["pacgan_mlp"],
        *TINY_TRAINER,
        "trainer.steps=4",
        "eval.every=2",
        "logger.tensorboard=false",
    ]
    run_train(tmp_path, overrides)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert 0 <= records[-1]["scores"]["modes"] <= 8


def test_grid_modes_trains_with_its_ema_and_two_d_steps(tmp_path):
    overrides = [
        "experiment=grid_modes",
        *TINY_MODEL["pacgan_mlp"],
        *TINY_TRAINER,
        "trainer.steps=4",
        "eval.every=4",
        "logger.tensorboard=false",
    ]
    run_train(tmp_path, overrides)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4]
    assert 0 <= records[-1]["scores"]["modes"] <= 25
    _, state = checkpoint.load(tmp_path)
    # two D steps per G step really ran: D's Adam stepped twice as often as G's
    adam_steps = {
        k: {float(v["step"]) for v in o["state"].values()} for k, o in state["optimizers"].items()
    }
    assert adam_steps == {"G": {4.0}, "D": {8.0}}
    # and G_ema is an average (decay 0.999), not a copy of G
    g, e = state["models"]["G"], state["models"]["G_ema"]
    weights = [k for k in g if k.endswith("weight")]
    assert weights and all(not torch.equal(g[k], e[k]) for k in weights)


# Every <model>_mnist setup and the keys it may change (its YAML comment lists each as a
# departure from the paper); everything else must be the recipe's (trainer.steps 3000
# is ganrun's default, the same in the recipe).
MNIST_DEPARTURES = {
    "wgan_mnist": {"model.width"},
    "wgan_gp_mnist": {"model.width"},
    "sngan_mnist": {"model.width"},
    "sngan_resnet_mnist": {"model.width", "trainer.steps"},
    "sagan_mnist": {"model.width", "trainer.batch_size"},
    "stylegan_mnist": {"model.width"},
    "biggan_mnist": {"model.width", "trainer.steps", "trainer.ema_decay"},
    "lsgan_mnist": {"model.width"},
    "acgan_mnist": {"model.width"},
    "ebgan_mnist": {"model.width"},
    "began_mnist": {"model.width", "optimizer.decay_every"},
    "dragan_mnist": {"trainer.steps", "trainer.checkpoint_every", "trainer.image_every"},
}


def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def test_every_cpu_setup_is_listed_with_its_departures():
    assert {e for e in group_options("experiment") if e.endswith("_mnist")} == set(MNIST_DEPARTURES)


@pytest.mark.parametrize("experiment", sorted(MNIST_DEPARTURES))
def test_a_cpu_setup_departs_from_its_recipe_only_where_it_says(experiment):
    from omegaconf import OmegaConf

    model = experiment.removesuffix("_mnist")
    cpu = _flat(OmegaConf.to_container(compose_config([f"experiment={experiment}"]), resolve=True))
    recipe = _flat(OmegaConf.to_container(compose_config([f"model={model}"]), resolve=True))
    changed = {k for k in set(cpu) | set(recipe) if cpu.get(k) != recipe.get(k)}
    # a width change moves every size derived from model.width: compare those against
    # the recipe at the CPU width, so any other change to the networks still shows
    if cpu["model.width"] != recipe["model.width"]:
        at_width = compose_config([f"model={model}", f"model.width={cpu['model.width']}"])
        at_width = _flat(OmegaConf.to_container(at_width, resolve=True))
        changed = {k for k in changed if cpu.get(k) != at_width.get(k)} | {"model.width"}
    changed = {k for k in changed if not k.startswith("model.recipe.")}  # read via optimizer.*
    assert changed == MNIST_DEPARTURES[experiment]

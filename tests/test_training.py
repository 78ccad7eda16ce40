"""The training loop: runs, resumes exactly, logs to TensorBoard, writes pictures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ganrun import checkpoint as ckpt
from ganrun.errors import CheckpointError
from tests.conftest import run_train, tiny_overrides


def _state(run_dir: Path):
    _, state = ckpt.load(run_dir)
    return state


def _assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    "model,dataset,extra",
    [
        ("dcgan", "mnist_embedded", []),
        ("vanilla", "mnist_embedded", []),  # dropout: D's masks come from the restored RNG
        ("vanilla", "ring", ["trainer.n_critic=2", "trainer.ema_decay=0.9"]),
        ("dcgan", "grid", ["optimizer=sgd"]),
        # WGAN's critic warm-up changes how many batches each step consumes
        (
            "dcgan",
            "ring",
            [
                "trainer.n_critic_warmup=3",
                "trainer.n_critic_warmup_steps=2",
                "trainer.n_critic_warmup_every=4",
            ],
        ),
    ],
)
def test_resume_gives_exactly_the_uninterrupted_weights(tmp_path, model, dataset, extra):
    base = tiny_overrides(
        model, dataset, "trainer.checkpoint_every=3", "logger.tensorboard=false", *extra
    )
    run_train(tmp_path / "straight", [*base, "trainer.steps=6"])
    run_train(tmp_path / "split", [*base, "trainer.steps=3"])
    run_train(tmp_path / "split", [*base, "trainer.steps=6", f"resume={tmp_path / 'split'}"])
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "split")
    assert a["step"] == b["step"] == 6
    _assert_same_tensors(a["models"], b["models"], "models")
    _assert_same_tensors(a["optimizers"], b["optimizers"], "optimizers")
    _assert_same_tensors(a["rng"]["torch"], b["rng"]["torch"], "rng")


def test_checkpoint_contents(tmp_path):
    cfg, _ = run_train(tmp_path, tiny_overrides("dcgan", "mnist_embedded", "trainer.ema_decay=0.5"))
    state = _state(tmp_path)
    assert state["step"] == 3 and state["version"] == ckpt.VERSION
    assert set(state["models"]) == {"G", "D", "G_ema"}
    assert set(state["optimizers"]) == {"G", "D"}
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    assert state["config"]["model"]["name"] == "dcgan"
    assert state["config"]["trainer"]["steps"] == 3
    assert state["choices"]["model"] == "dcgan" and state["choices"]["dataset"] == "mnist_embedded"
    # the 28 px digits at dcgan's min_resolution (conf/model/dcgan.yaml)
    assert state["data"] == {"shape": [1, 32, 32], "num_classes": 10, "kind": "image"}
    # every entry is loadable with weights_only (checked by ckpt.load) and the config is plain
    OmegaConf.create(state["config"])


def test_checkpoints_every_n_and_keep_k(tmp_path):
    run_train(
        tmp_path,
        tiny_overrides(
            "vanilla",
            "ring",
            "trainer.steps=7",
            "trainer.checkpoint_every=2",
            "trainer.keep_checkpoints=2",
        ),
    )
    steps = [s for s, _ in ckpt.step_checkpoints(tmp_path / "checkpoints")]
    assert steps == [6, 7]  # every 2 steps and at the end; the newest 2 kept


def test_ema_tracks_generator(tmp_path):
    run_train(
        tmp_path, tiny_overrides("vanilla", "ring", "trainer.ema_decay=0.0", "trainer.steps=2")
    )
    state = _state(tmp_path)
    _assert_same_tensors(state["models"]["G"], state["models"]["G_ema"])  # decay 0: a copy
    run_train(
        tmp_path / "b",
        tiny_overrides("vanilla", "ring", "trainer.ema_decay=0.99", "trainer.steps=2"),
    )
    state = _state(tmp_path / "b")
    g, e = state["models"]["G"], state["models"]["G_ema"]
    assert any(not torch.equal(g[k], e[k]) for k in g)


def test_tensorboard_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_train(
        tmp_path,
        tiny_overrides(
            "dcgan",
            "mnist_embedded",
            "trainer.steps=4",
            "trainer.log_every=2",
            "trainer.image_every=2",
        ),
    )
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in (
        "loss/d",
        "loss/g",
        "D/real",
        "D/fake",
        "grad_norm/d",
        "grad_norm/g",
        "perf/img_per_s",
    ):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("loss/g")] == [2, 4]
    assert all(0.0 <= e.value <= 1.0 for e in acc.Scalars("D/real"))
    assert all(e.value > 0 for e in acc.Scalars("perf/img_per_s"))
    assert "samples/fixed_z" in tags["images"]
    assert [e.step for e in acc.Images("samples/fixed_z")] == [2, 4]


def test_scatter_plots_for_points(tmp_path):
    from PIL import Image

    run_train(tmp_path, tiny_overrides("vanilla", "grid", "logger.tensorboard=false"))
    pngs = sorted((tmp_path / "samples").glob("*.png"))
    assert [p.name for p in pngs] == ["step-00000002.png", "step-00000003.png"]
    assert Image.open(pngs[-1]).size == (256, 256)


def test_resume_refuses_another_architecture(tmp_path):
    run_train(tmp_path, tiny_overrides("dcgan", "mnist_embedded", "logger.tensorboard=false"))
    before = {p: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    with pytest.raises(CheckpointError, match="another architecture"):
        run_train(
            tmp_path,
            tiny_overrides(
                "dcgan", "mnist_embedded", "model.width=16", f"resume={tmp_path}", "trainer.steps=5"
            ),
        )
    with pytest.raises(CheckpointError, match="trained with model=dcgan"):
        run_train(
            tmp_path,
            tiny_overrides("vanilla", "mnist_embedded", f"resume={tmp_path}", "trainer.steps=5"),
        )
    assert {p: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()} == before


def test_resume_extends_steps_and_keeps_recipe(tmp_path):
    run_train(
        tmp_path, tiny_overrides("vanilla", "ring", "logger.tensorboard=false", "trainer.steps=2")
    )
    cfg, _ = run_train(
        tmp_path,
        tiny_overrides(
            "vanilla", "ring", f"resume={tmp_path}", "trainer.steps=4", "logger.tensorboard=false"
        ),
    )
    state = _state(tmp_path)
    assert state["step"] == 4
    assert state["config"]["trainer"]["steps"] == 4
    assert state["config"]["resume"] == str(tmp_path)


def test_sgd_schedule_is_applied(tmp_path):
    run_train(
        tmp_path,
        tiny_overrides(
            "vanilla",
            "ring",
            "logger.tensorboard=false",
            "optimizer.decay_factor=2.0",
            "trainer.steps=3",
        ),
    )
    state = _state(tmp_path)
    lr_g = state["optimizers"]["G"]["param_groups"][0]["lr"]
    assert lr_g == pytest.approx(0.1 / 2.0**2)  # the last step was step index 2
    momentum = state["optimizers"]["G"]["param_groups"][0]["momentum"]
    assert momentum == pytest.approx(0.5 + 2 / 125000 * 0.2)


def test_losses_are_finite_and_returned(tmp_path):
    _, result = run_train(
        tmp_path, tiny_overrides("dcgan", "mnist_embedded", "logger.tensorboard=false")
    )
    assert {"loss/d", "loss/g"} <= set(result)
    assert result.pop("sweep/value") is None  # no evaluation: nothing for a sweeper
    assert all(torch.isfinite(torch.tensor(v)) for v in result.values())


def test_critic_warmup_schedule():
    from types import SimpleNamespace

    from ganrun.training.loop import batches_before, critic_steps

    # WGAN's reference code: 100 critic steps for the first 25 generator steps and every 500th
    t = SimpleNamespace(
        n_critic=5, n_critic_warmup=100, n_critic_warmup_steps=25, n_critic_warmup_every=500
    )
    assert [critic_steps(t, i) for i in (0, 24, 25, 499, 500, 501, 1000)] == [
        100,
        100,
        5,
        5,
        100,
        5,
        100,
    ]
    for step in (0, 1, 25, 26, 500, 501, 1234):
        assert batches_before(t, step) == sum(critic_steps(t, i) for i in range(step))
    off = SimpleNamespace(
        n_critic=3, n_critic_warmup=None, n_critic_warmup_steps=0, n_critic_warmup_every=0
    )
    assert batches_before(off, 10) == 30


def test_wgan_recipe_has_the_reference_warmup():
    from tests.conftest import compose_config

    t = compose_config(["model=wgan"]).trainer
    assert (t.n_critic, t.n_critic_warmup, t.n_critic_warmup_steps, t.n_critic_warmup_every) == (
        5,
        100,
        25,
        500,
    )


def test_training_start_removes_stale_temporaries(tmp_path, monkeypatch):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that names no process: its writer was killed mid-write
    stale = tmp_path / "checkpoints" / f".step-00000004.pt.tmp-{proc.pid}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"partial")
    seen = []

    def save(*args, **kwargs):  # the first checkpoint write sees the folder already clean
        seen.append(stale.exists())
        return real_save(*args, **kwargs)

    real_save = ckpt.save
    monkeypatch.setattr(ckpt, "save", save)
    run_train(tmp_path, tiny_overrides("vanilla", "ring", "trainer.steps=1"))
    assert seen and seen[0] is False and not stale.exists()

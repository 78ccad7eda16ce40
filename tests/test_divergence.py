"""The divergence guard: a run that goes non-finite stops (or rolls back) with one
line, keeps its good checkpoints, writes no NaN checkpoint; sample/eval refuse one."""

from __future__ import annotations

import logging
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from ganrun import checkpoint as ckpt
from ganrun.errors import CheckpointError, ConfigError, DivergenceError
from ganrun.objective import Objective
from tests.conftest import cli_error, compose_config, ganrun, run_train, tiny_overrides
from tests.test_cli import TINY

# 12 steps, checkpoints every 2, the newest 2 kept; a fault at step 7 shows at step 8
BASE = [
    "logger.tensorboard=false",
    "trainer.steps=12",
    "trainer.checkpoint_every=2",
    "trainer.keep_checkpoints=2",
    "trainer.image_every=100",
]
HUGE_LR = ["optimizer.lr_g=1e30", "optimizer.lr_d=1e30"]


def _overrides(*extra: str) -> list[str]:
    return tiny_overrides("dcgan", "mnist_embedded", *BASE, *extra)


def nan_at(monkeypatch, step: int, times: int | None = 1) -> dict[str, int]:
    """D's loss becomes NaN at generator step ``step`` (0-based), the first ``times``
    times the loop gets there (None: every time). Returns the count of faults."""
    original = Objective.d_loss
    fired = {"n": 0}

    def d_loss(self, G, D, real, real_c, at):
        loss, stats = original(self, G, D, real, real_c, at)
        if at == step and (times is None or fired["n"] < times):
            fired["n"] += 1
            loss = loss * float("nan")
        return loss, stats

    monkeypatch.setattr(Objective, "d_loss", d_loss)
    return fired


def _steps(run: Path) -> list[int]:
    return [s for s, _ in ckpt.step_checkpoints(run / ckpt.CKPT_DIR)]


def _finite(state) -> bool:
    return all(
        bool(torch.isfinite(v).all())
        for sd in state["models"].values()
        for v in sd.values()
        if v.is_floating_point()
    )


# --------------------------------------------------------------------------- stop
@pytest.mark.parametrize("log_every", [1, 100], ids=["log-step", "checkpoint-write"])
def test_nan_stops_the_run_and_keeps_the_good_checkpoints(tmp_path, monkeypatch, log_every):
    nan_at(monkeypatch, step=7)
    with pytest.raises(DivergenceError) as e:
        run_train(tmp_path, _overrides(f"trainer.log_every={log_every}"))
    err = e.value
    assert err.step == 8 and "training diverged at step 8: non-finite" in str(err)
    assert "D weights" in err.what
    if log_every == 1:  # found among the logged values, before anything is written
        assert "grad_norm/d" in err.what
    assert _steps(tmp_path) == [4, 6]  # no NaN checkpoint rotated the good ones out
    assert "the last good checkpoint is" in str(err) and "step-00000006.pt" in str(err)
    assert "trainer.on_nan=rollback" in str(err)
    _, state = ckpt.load(tmp_path)
    assert state["step"] == 6 and _finite(state)
    assert not list((tmp_path / ckpt.CKPT_DIR).glob(".*"))  # no temporary file left


@pytest.mark.parametrize("on_nan", ["stop", "rollback"])
def test_the_sigterm_checkpoint_is_checked_too(tmp_path, monkeypatch, on_nan):
    nan_at(monkeypatch, step=7)
    original = Objective.d_loss

    def d_loss(self, G, D, real, real_c, at):  # the NaN step is also when SIGTERM arrives
        if at == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, G, D, real, real_c, at)

    monkeypatch.setattr(Objective, "d_loss", d_loss)
    extra = ["trainer.log_every=100", "trainer.checkpoint_every=5", f"trainer.on_nan={on_nan}"]
    with pytest.raises(DivergenceError) as e:
        run_train(tmp_path, _overrides(*extra))
    assert e.value.step == 8 and "step-00000005.pt" in str(e.value)
    if on_nan == "rollback":  # no rollback when the run is being stopped
        assert "a stop signal is pending" in str(e.value)
    assert _steps(tmp_path) == [5]


def test_huge_learning_rates_stop_at_the_first_log_step(tmp_path):
    with pytest.raises(DivergenceError) as e:
        run_train(tmp_path, _overrides(*HUGE_LR))
    assert e.value.step == 1 and "at step 1" in str(e.value)
    assert "no checkpoint was written before it" in str(e.value)
    assert _steps(tmp_path) == []


def test_save_checkpoint_refuses_a_nonfinite_state(tmp_path):
    from ganrun.build import build
    from ganrun.training.loop import Trainer

    cfg = compose_config(_overrides("trainer.keep_checkpoints=1"))
    trainer = Trainer(cfg, tmp_path, build(cfg))
    good = trainer.save_checkpoint()
    before = good.read_bytes()
    trainer.step = 1
    bn = next(m for m in trainer.b.G.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var[0] = float("inf")
    with pytest.raises(DivergenceError) as e:
        trainer.save_checkpoint()
    assert e.value.what == ["G buffers"]
    bn.running_var.fill_(1.0)
    next(trainer.b.D.parameters()).data[0] = float("nan")
    trainer._finite_step = None
    with pytest.raises(DivergenceError) as e:
        trainer.save_checkpoint()
    assert e.value.what == ["D weights"]
    assert _steps(tmp_path) == [0] and good.read_bytes() == before


# --------------------------------------------------------------------------- rollback
def test_rollback_recovers_with_lower_learning_rates(tmp_path, monkeypatch, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fired = nan_at(monkeypatch, step=7)
    extra = ["trainer.on_nan=rollback", "logger.tensorboard=true", "trainer.ema_decay=0.9"]
    with caplog.at_level(logging.WARNING, logger="ganrun.training.loop"):
        cfg, result = run_train(tmp_path, _overrides(*extra))
    assert fired["n"] == 1
    lines = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    assert len(lines) == 1 and "at step 8: rolled back to step 6" in lines[0], lines
    assert "x0.5" in lines[0]
    assert _steps(tmp_path) == [10, 12]
    _, state = ckpt.load(tmp_path)
    assert state["step"] == 12 and _finite(state)
    assert state["guard"] == {"rollbacks": 1, "lr_factor": 0.5}
    lr = 0.5 * float(cfg.optimizer.lr_g)
    for opt in ("G", "D"):
        assert state["optimizers"][opt]["param_groups"][0]["lr"] == pytest.approx(lr)
    assert result["lr/g"] == pytest.approx(lr) and math.isfinite(result["loss/d"])

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("guard/rollbacks")] == [(6, 1.0)]
    # the abandoned step 7 is purged: one point per step
    assert [e.step for e in acc.Scalars("loss/g")] == list(range(1, 13))

    # the factor persists: a resumed run keeps the halved rates
    run_train(tmp_path, _overrides(*extra, "trainer.steps=14", f"resume={tmp_path}"))
    _, state = ckpt.load(tmp_path)
    assert state["step"] == 14 and state["guard"]["lr_factor"] == 0.5
    assert state["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(lr)


def test_rollback_gives_up_after_max_rollbacks(tmp_path, monkeypatch):
    fired = nan_at(monkeypatch, step=7, times=None)
    with pytest.raises(DivergenceError) as e:
        run_train(tmp_path, _overrides("trainer.on_nan=rollback", "trainer.max_rollbacks=2"))
    assert fired["n"] == 3  # the first time, then once after each rollback
    assert e.value.step == 8 and "gave up after 2 rollback(s)" in str(e.value)
    assert "lr factor 0.25" in str(e.value) and "step-00000006.pt" in str(e.value)
    assert _steps(tmp_path) == [4, 6]
    _, state = ckpt.load(tmp_path)
    assert _finite(state) and state["guard"] == {"rollbacks": 0, "lr_factor": 1.0}


def test_rollback_without_a_checkpoint_gives_up(tmp_path):
    with pytest.raises(DivergenceError) as e:
        run_train(tmp_path, _overrides(*HUGE_LR, "trainer.on_nan=rollback"))
    assert "no finite checkpoint of this run before step 1" in str(e.value)


def test_on_nan_options_are_checked(tmp_path):
    from ganrun.build import validate

    for bad, needle in [
        ("trainer.on_nan=retry", "choose from stop, rollback"),
        ("trainer.rollback_lr_factor=1.5", "rollback_lr_factor must be in (0, 1]"),
        ("trainer.max_rollbacks=-1", "max_rollbacks must be >= 0"),
    ]:
        with pytest.raises(ConfigError) as e:
            validate(compose_config(_overrides(bad)))
        assert needle in str(e.value)


def test_lr_scale_applies_to_every_schedule():
    from ganrun.optim import Adam

    for schedule, at_half in (("constant", 1.0), ("linear", 0.5)):
        recipe = Adam(lr_g=1e-3, lr_d=4e-3, schedule=schedule)
        opt_g, opt_d = recipe.build(
            [torch.nn.Parameter(torch.ones(1))], [torch.nn.Parameter(torch.ones(1))]
        )
        recipe.apply_schedule(opt_g, opt_d, step=5, total_steps=10, lr_scale=0.25)
        assert opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * at_half * 0.25)
        assert opt_d.param_groups[0]["lr"] == pytest.approx(4e-3 * at_half * 0.25)


def test_checkpoints_from_before_the_guard_resume(tmp_path):
    """Their config has no trainer.on_nan and their state no guard: defaults apply."""
    base = tiny_overrides("dcgan", "mnist_embedded", "logger.tensorboard=false")
    run_train(tmp_path, base)
    path, state = ckpt.load(tmp_path)
    for key in ("config", "config_unresolved"):
        for option in ("on_nan", "rollback_lr_factor", "max_rollbacks"):
            del state[key]["trainer"][option]
    del state["guard"]
    torch.save(state, path)
    run_train(tmp_path, [*base, "trainer.steps=5", f"resume={tmp_path}"])
    _, state = ckpt.load(tmp_path)
    assert state["step"] == 5 and state["config"]["trainer"]["on_nan"] == "stop"
    assert state["guard"] == {"rollbacks": 0, "lr_factor": 1.0}


# --------------------------------------------------------------------------- sample / eval
@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory) -> Path:
    """A tiny run (checkpoints at steps 2 and 3) plus a step-4 checkpoint with NaN
    weights in G and G_ema, written by hand as a run before the guard would have."""
    run = tmp_path_factory.mktemp("nanrun")
    run_train(
        run,
        tiny_overrides(
            "dcgan", "mnist_embedded", "logger.tensorboard=false", "trainer.ema_decay=0.9"
        ),
    )
    _, state = ckpt.load(run)
    for key in ("G", "G_ema"):
        for v in state["models"][key].values():
            if v.is_floating_point():
                v.fill_(float("nan"))
    state["step"] = 4
    path = ckpt.step_path(run, 4)
    torch.save(state, path)
    return path


def _cli_error(args: list[str], capsys) -> str:
    err = cli_error(args, capsys)
    assert err.startswith("ganrun: error: ")
    return err


@pytest.mark.parametrize("target", ["file", "run dir"])
def test_sample_and_eval_refuse_nonfinite_weights(nan_checkpoint, target, tmp_path, capsys):
    ckpt_arg = nan_checkpoint if target == "file" else ckpt.run_dir_of(nan_checkpoint)
    out = tmp_path / "grid.png"
    for args in (
        ["sample", f"ckpt={ckpt_arg}", f"out={out}"],
        ["eval", f"ckpt={ckpt_arg}", "metrics=[fid]", "features=mnist-classifier"],
    ):
        err = _cli_error(args, capsys)
        assert f"{nan_checkpoint}: non-finite weights in G_ema" in err
        assert "the run diverged; use an earlier checkpoint, e.g." in err
        assert "step-00000003.pt" in err
    assert not out.exists()


def test_load_generator_and_resume_refuse_nonfinite_weights(nan_checkpoint, tmp_path):
    from ganrun.commands.sample import load_generator

    for use_ema, key in ((True, "G_ema"), (False, "G")):
        with pytest.raises(CheckpointError, match=f"non-finite weights in {key}"):
            load_generator(nan_checkpoint, torch.device("cpu"), use_ema=use_ema)
    with pytest.raises(CheckpointError, match="non-finite weights in G .*G_ema"):
        run_train(
            ckpt.run_dir_of(nan_checkpoint),
            tiny_overrides(
                "dcgan", "mnist_embedded", "trainer.steps=6", f"resume={nan_checkpoint}"
            ),
        )


# --------------------------------------------------------------------------- CLI
def test_diverging_train_prints_one_line_and_exits_3(tmp_path):
    run = tmp_path / "run"
    r = ganrun(
        "train", *TINY, *HUGE_LR, "trainer.steps=5", "logger.tensorboard=false",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    # log_every is 50: the first check is at the last step, before its checkpoint
    assert lines[0].startswith("ganrun: error: training diverged at step 5: non-finite loss/d")
    assert "Traceback" not in r.stdout + r.stderr
    assert "training diverged at step 5" in (run / "train.log").read_text()
    assert _steps(run) == []

"""ganrun train [overrides] — train a model; `resume=<run dir or checkpoint>` continues one."""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ganrun import checkpoint as ckpt
from ganrun.build import build
from ganrun.commands import _to_log_files, report_errors
from ganrun.config import LoggerConfig, SweepConfig, TrainerConfig, register_configs
from ganrun.errors import CheckpointError, DivergenceError, GanrunError, Stopped
from ganrun.paths import conf_dir, config_groups
from ganrun.runinfo import announce
from ganrun.signals import STOP, Interrupted, signal_name
from ganrun.training import distributed
from ganrun.training.evaluation import make_evaluator, sweep_score, sweep_value
from ganrun.training.loggers import end_run
from ganrun.training.rundir import (
    RunDirLock,
    RunStatus,
    auto_resume,
    check_writable,
    read_status,
)

log = logging.getLogger(__name__)

# Group choices a resumed run may change (they hold no state in the checkpoint).
RESUME_SWAPPABLE = ("trainer", "logger", "eval")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resume_config(
    cfg: DictConfig, state: dict[str, Any], task_overrides: Sequence[str], source: Path
) -> DictConfig:
    """The config of a resumed run: the checkpoint's resolved config, with the
    command line's own overrides (e.g. ``trainer.steps=20000``) applied on top.
    Choices that shape the stored state (model, dataset, loss, optimizer, ...)
    must stay as they were."""
    base = OmegaConf.create(state.get("config_unresolved") or state["config"])
    if "sweep" not in base:  # a checkpoint from before sweep.* existed
        base["sweep"] = {}
    for key, schema in (
        ("trainer", TrainerConfig),
        ("logger", LoggerConfig),
        ("sweep", SweepConfig),
    ):
        if isinstance(base.get(key), DictConfig):  # settings newer than the checkpoint
            for k, v in OmegaConf.to_container(OmegaConf.structured(schema)).items():
                if k not in base[key]:
                    base[key][k] = v
    stored_choices = state.get("choices", {}) or {}
    groups = set(config_groups()) | set(stored_choices)
    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    for ov in parsed:
        key = ov.key_or_group
        if key == "resume" or key.startswith("hydra"):
            continue
        if key in groups:
            value = ov.value()
            if key in stored_choices and str(value) == str(stored_choices[key]):
                continue
            if key in RESUME_SWAPPABLE:
                base[key] = OmegaConf.to_container(cfg[key], resolve=True)
            elif key in stored_choices:
                raise CheckpointError(
                    f"{source} was trained with {key}={stored_choices[key]}; a resumed run keeps it "
                    f"(start a new run to use {key}={value})"
                )
            continue
        if ov.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(base, parent) if parent else base
            if node is not None and leaf in node:
                del node[leaf]
            continue
        OmegaConf.update(base, key, OmegaConf.select(cfg, key), force_add=True)
    base.resume = cfg.resume
    OmegaConf.set_struct(base, True)
    return base


def prepare(
    cfg: DictConfig, task_overrides: Sequence[str] = ()
) -> tuple[DictConfig, dict | None, Path | None]:
    """Resolve a resume request: (config to run, checkpoint state or None, its path)."""
    if not cfg.get("resume"):
        return cfg, None, None
    path, state = ckpt.load(cfg.resume, map_location="cpu")
    return resume_config(cfg, state, task_overrides, path), state, path


def train(
    cfg: DictConfig,
    run_dir: Path,
    choices: dict[str, str] | None = None,
    task_overrides: Sequence[str] = (),
) -> dict:
    """Train (or resume) with a composed config, writing into ``run_dir``.

    Holds the run dir's lock throughout (ganrun.training.rundir); without ``resume=``
    a run dir that already holds this run's checkpoints is continued (auto-resume)
    and one holding another run's is refused. A stop signal raises ``Stopped``
    (exit status 75) once the checkpoint is written, or before anything is trained.
    Once the dir is claimed, ``status.json`` records how the run ended."""
    run_dir = Path(run_dir)
    dist = distributed.init()  # torchrun (the CLI has done it already); else one process
    if not dist.is_main:  # torchrun: ranks > 0 train what rank 0 claims, never the run dir
        return _follow(run_dir)
    installed_here = not STOP.installed
    STOP.install()
    trainer = status = None
    sender = distributed.Sender(dist)  # the claim (or why there is none) to the other ranks
    try:
        STOP.raise_if_pending()
        with RunDirLock(run_dir):
            check_writable(run_dir / ckpt.CKPT_DIR, "checkpoints")
            cfg, state, source, choices = _claim(cfg, run_dir, choices, task_overrides)
            sender.send((cfg, state, source, choices))
            status = RunStatus(run_dir, int(cfg.trainer.steps))
            # A run dir's status changes only for a start that succeeded (a resume=...
            # with a mismatching model leaves the run's "finished" as it was); a fresh
            # dir gets one at once, so that even a failed start there says why.
            owned = read_status(run_dir) is None
            if owned:
                status.write("running", int(state["step"]) if state else 0)
            try:
                trainer = _trainer(cfg, run_dir, choices, state, source)
                status.write("running", trainer.step)
                announce(cfg, run_dir, choices)  # <run dir>/config.yaml, the recipe line
                owned = True
                result = trainer.run()
                if trainer.stopped_by is not None:
                    raise Interrupted(trainer.stopped_by)
            except BaseException as e:
                if isinstance(e, Interrupted):
                    e = Stopped(_stopped_message(e.signum, trainer, run_dir))
                if owned:
                    _record(status, trainer, e)
                end_run(trainer, _outcome(e), task_overrides)  # the loggers' last record
                if isinstance(e, Stopped):
                    raise e from None
                raise
            _summary(trainer, run_dir)
            value, why = sweep_value(cfg, run_dir)
            # sweep_value's second item names the score, or says why there is none
            sweep = {"metric": why, "value": value} if value is not None else {
                "metric": None, "value": None, "why": why,
            }  # fmt: skip
            status.write("finished", trainer.step, exit_status=0, sweep=sweep)
            end_run(trainer, "finished", task_overrides, {"sweep/value": value})
            result = dict(result)
            result["sweep/value"] = value
            distributed.barrier(dist)  # the other ranks wait for rank 0's end (evaluation)
            return result
    except Interrupted as e:  # before the dir was claimed
        raise Stopped(_stopped_message(e.signum, trainer, run_dir)) from None
    finally:
        sender.fail_unless_sent(sys.exc_info()[1])
        if installed_here:
            STOP.uninstall()
            STOP.reset()


def _summary(trainer, run_dir: Path) -> None:
    """The end of a finished run in a few lines: final and best scores, where the
    checkpoints and the last grid are, how to sample and continue."""
    from ganrun.training.evaluation import BEST_FILE, read_metrics

    lines = [f"summary of {run_dir} (step {trainer.step}, {trainer.elapsed:.0f} s of training):"]
    records = read_metrics(run_dir)
    if records:
        final = records[-1]
        shown = ", ".join(f"{k}={v:.4g}" for k, v in final["scores"].items() if "_std" not in k)
        lines.append(f"  final scores (step {final['step']}): {shown}")
    best = run_dir / ckpt.CKPT_DIR / BEST_FILE
    hook_best = next((h.best for h in trainer.hooks if getattr(h, "best", None)), None)
    if hook_best and best.is_file():
        lines.append(
            f"  best: {hook_best['score']}={hook_best['value']:.4g} at step {hook_best['step']}: {best}"
        )
    found = ckpt.step_checkpoints(run_dir / ckpt.CKPT_DIR)
    if found:
        lines.append(f"  last checkpoint: {found[-1][1]}")
    grids = sorted((run_dir / "samples").glob("step-*.png"))
    if grids:
        lines.append(f"  last grid: {grids[-1]}")
    lines.append(f"  sample: ganrun sample ckpt={run_dir} out=grid.png")
    lines.append(f"  continue: ganrun train resume={run_dir} trainer.steps={2 * int(trainer.step)}")
    log.info("\n".join(lines))


def _outcome(e: BaseException) -> str:
    """status.json's word for a run that ended with ``e``."""
    if isinstance(e, GanrunError):
        return {Stopped: "stopped", DivergenceError: "diverged"}.get(type(e), "failed")
    return "stopped" if isinstance(e, KeyboardInterrupt) else "failed"


def _record(status: RunStatus, trainer, e: BaseException) -> None:
    """status.json for a run that ended with ``e``."""
    step = trainer.step if trainer is not None else 0
    if isinstance(e, GanrunError):
        status.write(_outcome(e), step, message=str(e), exit_status=e.exit_status)
    elif isinstance(e, KeyboardInterrupt):  # a second Ctrl-C
        status.write("stopped", step, message="interrupted (a second Ctrl-C)", exit_status=130)
    else:  # a bug: the traceback follows on the terminal
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        status.write("failed", step, message=f"{type(e).__name__}: {first}", exit_status=1)


def _claim(cfg, run_dir: Path, choices, task_overrides):
    """(config, state, checkpoint path, choices) of the run to start: from resume=,
    from this run's own checkpoints in ``run_dir`` (auto-resume), or fresh (no state).
    Raises, before anything is written, for a dir holding another run's checkpoints."""
    from ganrun.training.guard import refuse_nonfinite

    cfg, state, source = prepare(cfg, task_overrides)
    if state is None:
        found = auto_resume(cfg, run_dir)
        if found is not None:
            source, state = found
            log.info(
                "auto-resume: %s holds this run's checkpoints; continuing from step %d (%s); "
                "a different run needs a fresh dir (hydra.run.dir=...)",
                run_dir,
                int(state["step"]),
                source,
            )
    if state is not None:
        refuse_nonfinite(source, state, state["models"])  # a diverged state stays diverged
        choices = state.get("choices") or choices
    sweep_score(cfg)  # a contradicting sweep.direction: refused before training
    return cfg, state, source, choices


def _follow(run_dir: Path) -> dict:
    """torchrun, ranks > 0: train with the config and checkpoint state rank 0 claimed
    (ganrun.training.distributed); only rank 0 logs, evaluates and writes the run dir."""
    cfg, state, source, choices = distributed.receive()
    distributed.quiet_loggers(cfg)
    trainer = _trainer(cfg, run_dir, choices, state, source, hooks=False)
    trainer.run()
    if trainer.stopped_by is not None:
        raise Stopped(_stopped_message(trainer.stopped_by, trainer, run_dir))
    distributed.barrier()
    return {}


def _trainer(cfg, run_dir: Path, choices, state, source, hooks: bool = True):
    """The Trainer, built, and loaded from ``state`` when there is one."""
    from ganrun.training.loop import Trainer

    if cfg.trainer.get("threads"):
        torch.set_num_threads(int(cfg.trainer.threads))
    dist = distributed.current()
    if dist.enabled:  # torchrun: each rank its own GPU
        cfg.trainer.device = distributed.local_device(str(cfg.trainer.device), dist)
    seed_everything(int(cfg.seed))
    built = build(cfg)
    evaluator = make_evaluator(cfg, built, run_dir, choices) if hooks else None
    hooks = [evaluator] if evaluator is not None else []
    trainer = Trainer(cfg, run_dir, built, choices=choices, hooks=hooks)
    if state is not None:
        trainer.load_state(state, source)
        if cfg.get("resume"):
            log.info("resumed from %s at step %d", source, trainer.step)
    return trainer


def _stopped_message(signum: int, trainer, run_dir: Path) -> str:
    name = signal_name(signum)
    if trainer is None or trainer.last_checkpoint is None and trainer.stopped_by is None:
        at = f" at step {trainer.step}" if trainer is not None and trainer.step else ""
        return (
            f"{name} during start-up{at}: nothing was trained and the run dir's files are as "
            f"they were; rerun the same command to start"
        )
    where = f"; checkpoint {trainer.last_checkpoint}" if trainer.last_checkpoint else ""
    if trainer.stopped_by is None:  # after the loop: the final hooks (evaluation)
        return (
            f"{name} after training finished (step {trainer.step}{where}), during the final "
            f"evaluation, which did not complete; evaluate with: ganrun eval ckpt={run_dir}"
        )
    return (
        f"{name} at step {trainer.step}{where}; continue with: ganrun train resume={run_dir} "
        "(or rerun the same command with the same hydra.run.dir: it resumes by itself)"
    )


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")
def main(cfg: DictConfig):
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    choices = {
        k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra") and v is not None
    }
    try:
        result = report_errors(lambda: _job(cfg, run_dir, choices, list(hc.overrides.task)))
    except SystemExit as e:
        # in a sweep, a job that was refused (2) or diverged (3) does not sink the
        # others: its line is on stderr, in its train.log and its status.json, and the
        # sweeper gets no value (a failed trial). A stop signal (75) stops the sweep.
        if hc.mode == RunMode.MULTIRUN and e.code in (2, 3):
            _to_log_files(f"job failed (exit status {e.code}); the sweep goes on")
            return None
        raise
    # the one number for sweepers (sweep.metric; None without a finite score)
    return (result or {}).get("sweep/value")


def _job(cfg, run_dir, choices, overrides):
    try:
        return train(cfg, run_dir, choices, overrides)
    except GanrunError as e:
        if isinstance(e, Stopped):
            _to_log_files(f"stopped: {e}")
            if distributed.is_main():  # torchrun: one line, from rank 0
                print(f"ganrun: stopped: {e}", file=sys.stderr)
                sys.stderr.flush()
            raise SystemExit(e.exit_status) from None
        # a sweep's job refused before it claimed its dir has no status.json: its
        # train.log says why (report_errors logs a divergence itself)
        if HydraConfig.get().mode == RunMode.MULTIRUN and not isinstance(e, DivergenceError):
            _to_log_files(f"error: {e}")
        raise


register_configs()

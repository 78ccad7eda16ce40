"""ganrun's Optuna sweeper: ``hydra/sweeper=ganrun_optuna`` (docs/SWEEPS.md).

Hydra instantiates ``hydra_plugins.ganrun_sweepers.OptunaSweeper`` (the plugin shim
in ganrun/_plugins), which hands everything to ``OptunaSweeper`` here.

* The search space is ``hydra.sweeper.params`` plus sweeps on the command line, in
  Hydra's override grammar (ganrun.sweepers.space).
* The study lives in ``<sweep dir>/optuna.journal`` (Optuna's JournalStorage on a
  file: no database). Rerunning the same command continues it up to ``n_trials``
  trials in all: finished and failed trials are kept, a trial that was running when
  the sweep was interrupted is run again with its own parameters in its own job dir
  (where ganrun's auto-resume continues its checkpoint), and only the missing trials
  are asked for. A job dir is named by its trial's number, so no job dir ever
  receives a different trial.
* A job that returns no value (refused, diverged, no finite score: see
  ganrun.training.evaluation.sweep_value) is a FAIL trial with its status.json line, never
  a fake 0 or inf, and is never the best.
* After each batch ``trials.jsonl`` (one line per trial) and ``best.yaml`` (the best
  trial's value, parameters and a copy-pasteable ``ganrun train ...`` line) are
  written atomically into the sweep dir.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial, TrialState

from ganrun.errors import GanrunError, Stopped
from ganrun.signals import Interrupted
from ganrun.sweepers import space as search_space
from ganrun.sweepers.results import STUDY_FILE, print_best, write_files

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random")
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# Fixed overrides that say how a trial runs, not what it computes: a continued study
# may change them (another machine, more threads, quieter logs) and stays the same
# search. trainer.steps and the eval settings are not among them: they change the score.
HOW_IT_RUNS = (
    "trainer.threads",
    "trainer.device",
    "trainer.num_workers",
    "trainer.progress",
    "trainer.log_every",
    "trainer.image_every",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "logger",
)


def _fail(message: str) -> None:
    """One line and exit status 2, as the CLI's preflight does (Hydra would print a
    traceback for an exception raised in a sweeper)."""
    print(f"ganrun: error: {message}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(2)


class OptunaSweeper:
    def __init__(
        self,
        n_trials: int = 20,
        n_jobs: int = 1,
        study_name: str | None = None,
        sampler: dict | None = None,
        params: dict | None = None,
    ) -> None:
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.study_name = study_name
        self.sampler_cfg = dict(
            OmegaConf.to_container(sampler, resolve=True)
            if OmegaConf.is_config(sampler)
            else sampler or {}
        )
        self.params = dict(params or {})
        if self.n_trials < 1 or self.n_jobs < 1:
            _fail(
                f"hydra.sweeper.n_trials={n_trials} and n_jobs={n_jobs} must both be >= 1 "
                "(n_trials: trials in the whole study; n_jobs: trials per batch)"
            )
        name = self.sampler_cfg.get("name", "tpe")
        if name not in SAMPLERS:
            _fail(f"hydra.sweeper.sampler.name={name} is not a sampler; choose from: tpe, random")
        self.config: DictConfig | None = None
        self.hydra_context = None
        self.launcher = None

    # ------------------------------------------------------------------ Hydra
    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list:
        assert self.config is not None
        params_text = [f"{k}={v}" for k, v in self.params.items()]
        try:
            fixed, params = search_space.parse(params_text + list(arguments))
        except Exception as e:
            _fail(f"hydra.sweeper.params: {str(e).strip().splitlines()[0]}")
        if not params:
            _fail(
                "the Optuna sweeper has nothing to search: give hydra.sweeper.params (an "
                "hparams_search=... file does) or a sweep such as 'optimizer.lr_d=tag(log, "
                "interval(1e-5,1e-3))'"
            )
        metric, direction = self._objective()
        self._check_composes(fixed, params)

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(sweep_dir)
        try:
            study = self._study(sweep_dir, fixed, params, metric, direction)
            # after _study: a refused rerun (another search's study) changes nothing
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
            returns = self._run(study, sweep_dir, fixed, params)
            write_files(study, sweep_dir, metric, direction)
            print_best(study, sweep_dir, metric, direction)
            return returns
        except BaseException as e:
            # interrupted (a stop signal: exit 75) or a crash: keep what is known; the
            # trial(s) still RUNNING are run again by the next run of the same command
            if "study" in locals():
                write_files(study, sweep_dir, metric, direction)
                print(
                    f"ganrun: the search stopped; rerun the same command to continue the study "
                    f"in {sweep_dir}",
                    file=sys.stderr,
                )
            if isinstance(e, Interrupted):  # a signal to this process, outside any job's loop
                # (jobs in worker processes): the status schedulers look for, and not the
                # single run's "nothing was trained" line
                raise SystemExit(Stopped.exit_status) from None
            raise
        finally:
            lock.release()

    # ------------------------------------------------------------------ set-up
    def _objective(self) -> tuple[str, str]:
        from ganrun.training.evaluation import sweep_score

        try:
            name, higher = sweep_score(self.config)
        except GanrunError as e:
            _fail(str(e))
        if name is None:
            _fail(
                "an Optuna search needs a score to optimize: choose an evaluation (eval=modes, "
                "eval=offline, eval=fid) or set sweep.metric=<score>"
            )
        return name, "maximize" if higher else "minimize"

    def _check_composes(self, fixed: list[str], params: dict) -> None:
        """A trial's config composes (a misspelt key in the search space fails here,
        with one line, rather than in every job)."""
        point = [p.override(p.low_point()) for p in params.values()]
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, fixed + point)
        except Exception as e:
            _fail(f"the search space does not compose ({' '.join(point)}): {_lines(e)}")
        if "trainer" in cfg:  # ganrun train: its own checks, as the preflight runs them
            from ganrun.build import validate

            with open_dict(cfg):
                del cfg["hydra"]
            try:
                validate(cfg)
            except GanrunError as e:
                _fail(f"the search space gives an invalid config ({' '.join(point)}): {e}")

    def _sampler(self, n_before: int):
        cfg = dict(self.sampler_cfg)
        name = cfg.pop("name", "tpe")
        seed = cfg.pop("seed", None)
        # a continued study must not replay the first trials' random draws: the seed
        # moves on with the number of trials already in it
        if seed is not None:
            seed = int(seed) + n_before
        kwargs = {k: v for k, v in cfg.items() if v is not None}
        try:
            if name == "random":  # TPE's settings do not apply to it
                kwargs.pop("n_startup_trials", None)
                return optuna.samplers.RandomSampler(seed=seed, **kwargs)
            return optuna.samplers.TPESampler(seed=seed, **kwargs)
        except TypeError as e:
            _fail(f"hydra.sweeper.sampler: {e}")

    def _study(self, sweep_dir: Path, fixed, params, metric: str, direction: str):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        identity = {
            "fixed": sorted(o for o in fixed if not _how_it_runs(o)),
            "space": {k: distribution_to_json(p.distribution) for k, p in params.items()},
            "metric": metric,
            "reduce": str((self.config.get("sweep") or {}).get("reduce", "best")),
            "direction": direction,
        }
        journal = sweep_dir / STUDY_FILE
        storage = JournalStorage(JournalFileBackend(str(journal)))
        name = self.study_name or "ganrun"
        existing = {s.study_name: s._study_id for s in storage.get_all_studies()}
        n_before = 0
        if name in existing:  # this search's study, or another's?
            n_before = len(storage.get_all_trials(existing[name], deepcopy=False))
            stored = storage.get_study_user_attrs(existing[name]).get("ganrun_search")
            if stored is not None and stored != identity:
                what = next(k for k in identity if stored.get(k) != identity[k])
                _fail(
                    f"{sweep_dir} holds the study of another search "
                    f"({_difference(what, stored, identity)}); rerun that search's command to "
                    f"continue it, or start this one in a fresh dir (hydra.sweep.dir=<new dir>) "
                    f"or delete {journal}"
                )
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=self._sampler(n_before),
            direction=direction,
            load_if_exists=True,
        )
        if "ganrun_search" not in study.user_attrs:
            study.set_user_attr("ganrun_search", identity)
        done = sum(t.state in FINISHED for t in study.trials)
        stale = sum(t.state == TrialState.RUNNING for t in study.trials)
        if study.trials:
            log.info(
                "continuing the study in %s: %d trial(s) finished, %d interrupted (run again in "
                "their own dirs), %d to go of hydra.sweeper.n_trials=%d",
                journal,
                done,
                stale,
                max(0, self.n_trials - len(study.trials)),
                self.n_trials,
            )
        else:
            log.info(
                "new study in %s: %d trial(s), %d per batch; rerun the same command to continue it",
                journal,
                self.n_trials,
                self.n_jobs,
            )
        return study

    # ------------------------------------------------------------------ trials
    def _run(self, study, sweep_dir: Path, fixed: list[str], params: dict) -> list:
        distributions = {k: p.distribution for k, p in params.items()}
        # RUNNING trials at the start belong to an interrupted run of this sweep (the
        # sweep dir's lock rules out a live one): run them again, in their own dirs
        queue: list[FrozenTrial] = [
            t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING
        ]
        returns = []
        while True:
            if queue:
                batch, queue = queue[: self.n_jobs], queue[self.n_jobs :]
                trials = [(t.number, t.user_attrs.get("overrides")) for t in batch]
            else:
                remaining = self.n_trials - len(study.trials)
                if remaining <= 0:
                    break
                trials = []
                for _ in range(min(self.n_jobs, remaining)):
                    trial = study.ask(distributions)
                    overrides = fixed + search_space.params_overrides(params, trial.params)
                    trial.set_user_attr("overrides", overrides)
                    trials.append((trial.number, overrides))
            runnable = []
            for number, overrides in trials:
                if overrides is None:  # not asked by this sweeper
                    _tell(study, number, None, message="interrupted; no overrides recorded")
                else:
                    runnable.append((number, list(overrides)))
            for group in _contiguous(runnable):
                results = self.launcher.launch(
                    [overrides for _, overrides in group], initial_job_idx=group[0][0]
                )
                for (number, _), ret in zip(group, results):
                    self._record(study, sweep_dir, number, ret)
                returns.append(results)
            write_files(study, sweep_dir, *_objective_of(study))
        return returns

    def _record(self, study, sweep_dir: Path, number: int, ret) -> None:
        from ganrun.training.rundir import read_status

        run_dir = _job_dir(ret, sweep_dir, number)
        status = read_status(run_dir) or {}
        if status.get("status") == "stopped" and ret.status != JobStatus.COMPLETED:
            # stopped by a signal with a checkpoint (e.g. SIGTERM on a cluster, not
            # requeued): not a result and not a failure. The trial stays RUNNING, and the
            # next run of the same command continues it in its dir.
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(
                study._study_id, number
            )
            for k, v in (("message", status.get("message")), ("status", "stopped")):
                if v is not None:
                    study._storage.set_trial_user_attr(trial_id, k, v)
            log.warning(
                "trial %d was stopped (%s): rerun the same command to continue it",
                number,
                status.get("message"),
            )
            return
        value, message = None, None
        if ret.status == JobStatus.COMPLETED:
            value = ret.return_value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                value = None
            elif not math.isfinite(float(value)):
                value = None
            if value is None:
                message = (
                    status.get("message")
                    or (status.get("sweep") or {}).get("why")
                    or f"no status.json in {run_dir}: the job was refused before training "
                    "(its line is in the sweep's output)"
                )
        else:  # the job raised (a bug, or an error Hydra caught)
            e = ret._return_value
            message = status.get("message") or f"{type(e).__name__}: {_first_line(e)}"
        _tell(
            study,
            number,
            value,
            message=message,
            run_dir=os.path.relpath(run_dir, sweep_dir),
            status=status.get("status"),
        )


# --------------------------------------------------------------------------- helpers
def _tell(study, number: int, value: float | None, **attrs: Any) -> None:
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    for k, v in attrs.items():
        if v is not None:
            study._storage.set_trial_user_attr(trial_id, k, v)
    if value is None:
        log.warning("trial %d failed: %s", number, attrs.get("message"))
        study.tell(number, state=TrialState.FAIL)
    else:
        study.tell(number, float(value))


def _objective_of(study) -> tuple[str, str]:
    identity = study.user_attrs.get("ganrun_search") or {}
    return identity.get("metric", "value"), identity.get("direction", study.direction.name.lower())


def _contiguous(trials: list[tuple[int, list[str]]]):
    """Runs of consecutive trial numbers: Hydra numbers a launch's jobs from
    ``initial_job_idx`` on, and the job dir is named by that number."""
    group: list = []
    for item in sorted(trials):
        if group and item[0] != group[-1][0] + 1:
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _job_dir(ret, sweep_dir: Path, number: int) -> Path:
    """The trial's job dir: from its job's Hydra config, else (a job that did not
    return one, e.g. a submitit job stopped by a signal) the dir named by its number:
    ``<number>_<params>`` (ganrun/runname.py) or ``<number>``."""
    try:
        return Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    except Exception:
        named = sorted(p for p in sweep_dir.glob(f"{number}_*") if p.is_dir())
        return named[0] if len(named) == 1 else sweep_dir / str(number)


def _lines(e: BaseException | None) -> str:
    """The first line of an exception and of its causes (Hydra puts the reason there)."""
    parts: list[str] = []
    while e is not None and len(parts) < 3:
        line = _first_line(e).rstrip(".")
        if line and line not in parts:
            parts.append(line)
        e = e.__cause__ or e.__context__
    return ": ".join(parts)


def _how_it_runs(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return any(key == k or key.startswith(k + ".") for k in HOW_IT_RUNS)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _difference(what: str, stored: dict, now: dict) -> str:
    if what == "fixed":
        a, b = set(stored["fixed"]), set(now["fixed"])
        parts = [f"{x} there" for x in sorted(a - b)] + [f"{x} now" for x in sorted(b - a)]
        return "fixed overrides differ: " + ", ".join(parts[:3])
    if what == "space":
        keys = sorted(set(stored["space"]) ^ set(now["space"])) or [
            k for k in now["space"] if stored["space"].get(k) != now["space"][k]
        ]
        return f"search space differs in {', '.join(keys[:3])}"
    return f"{what}={stored.get(what)} there, {now.get(what)} now"


def _lock(sweep_dir: Path):
    """One sweep per sweep dir (the run-dir lock of ganrun.training.rundir on the sweep
    dir): a second process continuing the same study at the same time would run the
    interrupted trials twice."""
    from ganrun.training.rundir import RunDirError, RunDirLock, holder

    lock = RunDirLock(sweep_dir)
    try:
        return lock.acquire()
    except RunDirError:
        _fail(
            f"{sweep_dir} is in use by another ganrun sweep ({holder(lock.path)}); wait for it "
            "to finish or stop it, or search in another dir (hydra.sweep.dir=<dir>)"
        )

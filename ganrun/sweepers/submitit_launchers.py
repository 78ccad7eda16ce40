"""``hydra/launcher=slurm`` and ``hydra/launcher=submitit_local``: hydra-submitit-launcher's
launchers with three additions (docs/SWEEPS.md, "SLURM").

* **The preemption signal is SIGUSR1.** submitit asks SLURM for ``--signal=USR2@<delay>``
  by default; ganrun turns SIGTERM and SIGUSR1 (not USR2) into "finish the step, write a
  checkpoint, exit 75". The launcher sets ``SUBMITIT_PREEMPT_SIGNAL=USR1`` for itself and
  the jobs it submits (they inherit the environment), so the sbatch script says
  ``#SBATCH --signal=USR1@<signal_delay_s>``.
* **Checkpoint, then requeue.** In the job, ganrun's handlers take the signal first:
  training stops at a step boundary with a checkpoint (exit 75). The job then hands the
  same signal to submitit's own handler, which requeues it (``scontrol requeue`` on
  SLURM; the local executor restarts it); the requeued job reruns in the same job dir,
  where ganrun's auto-resume continues from that checkpoint. A job at its time limit is
  requeued at most ``max_num_timeout`` times; a preempted one without limit (submitit's
  rules).
* **One job's end is its own.** Each job's result is collected on its own, so a job
  that was killed or lost is a failed job (a FAIL trial for the Optuna sweeper) and
  does not take the other jobs' results with it. ``trainer.threads`` is set per job
  from ``cpus_per_task`` (or, for the local executor, the cores shared by the batch).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit  # noqa: F401  (the extra: imported here so a missing one gives one line)
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _plugin
from omegaconf import OmegaConf

from ganrun.sweepers import threads_for, with_threads

log = logging.getLogger(__name__)

PREEMPT_ENV = "SUBMITIT_PREEMPT_SIGNAL"
PREEMPT_SIGNAL = "USR1"  # one of ganrun.signals.SIGNALS


def use_sigusr1() -> None:
    """Make submitit (in this process and the jobs it starts) use SIGUSR1."""
    given = os.environ.get(PREEMPT_ENV)
    if given not in (None, "", PREEMPT_SIGNAL):
        from ganrun.sweepers.optuna_sweeper import _fail  # one line, exit 2

        _fail(
            f"{PREEMPT_ENV}={given}: ganrun checkpoints on SIGUSR1 and SIGTERM, so its "
            f"launchers need {PREEMPT_ENV}=USR1 (or unset)"
        )
    os.environ[PREEMPT_ENV] = PREEMPT_SIGNAL
    from submitit.core.job_environment import JobEnvironment

    JobEnvironment.USR_SIG = PREEMPT_SIGNAL  # read at import time: set it again


class _Ganrun:
    """Mixed in before hydra-submitit-launcher's BaseSubmititLauncher."""

    def __init__(self, threads_per_job: int | None = None, **params: Any) -> None:
        use_sigusr1()
        super().__init__(**params)
        self.threads_per_job = threads_per_job

    def threads(self, n_jobs: int) -> int | None:
        if self.threads_per_job is not None:
            return int(self.threads_per_job)
        if self.params.get("cpus_per_task"):
            return int(self.params["cpus_per_task"])
        if self._EXECUTOR == "local":  # the local executor starts every job at once
            return threads_for(os.cpu_count() or 1, n_jobs)
        return None  # SLURM: one CPU per task unless cpus_per_task says otherwise

    # ------------------------------------------------------------ submitting side
    def executor(self):
        """The submitit executor with this launcher's parameters (its sbatch script:
        ``executor._executor._make_submission_file_text(command, uid)``)."""

        params = dict(self.params)
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(_plugin.BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()}
        )
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        assert self.config is not None
        jobs = with_threads(self.config, job_overrides, self.threads(len(job_overrides)))
        executor = self.executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info("submitit '%s' sweep output dir: %s", self._EXECUTOR, sweep_dir)
        args = []
        for i, overrides in enumerate(jobs):
            num = initial_job_idx + i
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            args.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}"))
        state = Singleton.get_state()
        submitted = executor.map_array(self, *zip(*[(*a, state) for a in args]))
        return [_result(job, overrides) for job, overrides in zip(submitted, jobs)]

    # ------------------------------------------------------------ the job's side
    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:

        from ganrun.errors import Stopped
        from ganrun.signals import STOP, Interrupted

        preempt = submitit.JobEnvironment._usr_sig()
        submitits = signal.getsignal(preempt)  # submitit's checkpoint-and-requeue
        STOP.install()  # ganrun's handlers for the whole job, so the signal is known after
        try:
            return super().__call__(*args, **kwargs)
        except (SystemExit, Interrupted) as e:
            stopped = isinstance(e, Interrupted) or e.code == Stopped.exit_status
            if stopped and STOP.signum == preempt and callable(submitits):
                STOP.uninstall()
                log.info(
                    "stopped by %s with a checkpoint: asking submitit to requeue", preempt.name
                )
                submitits(preempt, None)  # requeues (and exits), or raises why it will not
            raise
        finally:
            STOP.uninstall()
            STOP.reset()


def _result(job, overrides: list[str]) -> JobReturn:
    try:
        return job.results()[0]
    except Exception as e:  # killed, lost, stopped without a requeue: this job only
        log.error("job %s (%s) ended without a result: %s", job.job_id, " ".join(overrides), e)
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        ret.return_value = e
        return ret


class LocalLauncher(_Ganrun, _plugin.LocalLauncher):
    pass


class SlurmLauncher(_Ganrun, _plugin.SlurmLauncher):
    pass

"""``hydra/launcher=joblib``: hydra-joblib-launcher's launcher, plus ``trainer.threads``.

Several jobs run at once in joblib's worker processes (loky). Each job gets
``trainer.threads=<cores // jobs at once>`` (``threads_per_job`` overrides it), so
that N jobs do not each start torch's one-thread-per-core pool on the same cores.
loky also sets ``OMP_NUM_THREADS`` in its workers to the same share, which torch
reads when it is first imported there; the override makes the number explicit, in
each job's ``.hydra/overrides.yaml``, and holds where that variable would not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.plugins.launcher import Launcher
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as _Joblib

from ganrun.sweepers import threads_for, with_threads


class JoblibLauncher(Launcher):
    def __init__(self, threads_per_job: int | None = None, **params: Any) -> None:
        self.threads_per_job = threads_per_job
        self.inner = _Joblib(**params)
        self.config = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.inner.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def threads(self, n_jobs_in_batch: int) -> int:
        if self.threads_per_job is not None:
            return int(self.threads_per_job)
        from joblib import cpu_count

        cpus = cpu_count()
        n_jobs = int(self.inner.joblib.get("n_jobs", -1) or -1)
        if n_jobs < 0:  # joblib's convention: -1 = all cores, -2 = all but one, ...
            n_jobs = max(1, cpus + 1 + n_jobs)
        return threads_for(cpus, min(n_jobs, n_jobs_in_batch))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        jobs = with_threads(self.config, job_overrides, self.threads(len(job_overrides)))
        return self.inner.launch(jobs, initial_job_idx)

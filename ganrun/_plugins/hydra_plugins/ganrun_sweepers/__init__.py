"""ganrun's Hydra plugins: the classes Hydra instantiates for ``hydra/sweeper=ganrun_optuna``
and ``hydra/launcher=joblib | slurm | submitit_local`` (conf/hydra/).

Hydra accepts plugins only from the ``hydra_plugins`` namespace package and imports this
module at every start, so it stays tiny: each class hands over to ganrun.sweepers and
imports optuna or a launcher plugin only when it is chosen, with one line naming the
``ganrun[sweeps]`` extra when that is not installed (docs/ARCHITECTURE.md, "Sweeps").
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.launcher import Launcher
from hydra.plugins.search_path_plugin import SearchPathPlugin
from hydra.plugins.sweeper import Sweeper


def _require(module: str, what: str):
    from ganrun.sweepers import require

    return require(module, what)


class OptunaSweeper(Sweeper):
    def __init__(self, **params: Any) -> None:
        impl = _require("ganrun.sweepers.optuna_sweeper", "hydra/sweeper=ganrun_optuna")
        self.impl = impl.OptunaSweeper(**params)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.impl.sweep(arguments)


class _Delegate(Launcher):
    module = name = what = ""

    def __init__(self, **params: Any) -> None:
        self.impl = getattr(_require(self.module, self.what), self.name)(**params)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides, initial_job_idx: int):
        return self.impl.launch(job_overrides, initial_job_idx)


class JoblibLauncher(_Delegate):
    module, name, what = (
        "ganrun.sweepers.joblib_launcher",
        "JoblibLauncher",
        "hydra/launcher=joblib",
    )


class SubmititLocalLauncher(_Delegate):
    module, name = "ganrun.sweepers.submitit_launchers", "LocalLauncher"
    what = "hydra/launcher=submitit_local"


class SlurmLauncher(_Delegate):
    module, name, what = (
        "ganrun.sweepers.submitit_launchers",
        "SlurmLauncher",
        "hydra/launcher=slurm",
    )


class GanrunConfigs(SearchPathPlugin):
    """Runs after Hydra's plugin scan, before composing: lets ganrun's
    conf/hydra/launcher/joblib.yaml and submitit_local.yaml replace the launcher
    plugins' configs of the same names (ganrun.sweepers.forget_shadowed_configs)."""

    def manipulate_search_path(self, search_path) -> None:
        from ganrun.sweepers import forget_shadowed_configs

        forget_shadowed_configs(search_path)

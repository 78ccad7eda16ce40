"""Sweeps: ganrun's Optuna sweeper and its launchers (docs/SWEEPS.md).

Hydra finds plugins only in the ``hydra_plugins`` namespace package, so the classes it
instantiates are a thin shim, ``hydra_plugins.ganrun_sweepers`` (in
``ganrun/_plugins/``, installed as a top-level package; docs/ARCHITECTURE.md says why).
The code is here:

* ``optuna_sweeper``: ``hydra/sweeper=ganrun_optuna`` (needs ``optuna``);
* ``joblib_launcher``: ``hydra/launcher=joblib`` (needs ``hydra-joblib-launcher``);
* ``submitit_launchers``: ``hydra/launcher=slurm`` and ``submitit_local`` (needs
  ``hydra-submitit-launcher``).

Those dependencies are the optional extra ``ganrun[sweeps]``; without it, choosing
one of these gives one line saying so (``require``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

EXTRA = "pip install 'ganrun[sweeps]'"
# what ganrun[sweeps] brings (top-level modules, and the launcher plugins' own)
_EXTRA_MODULES = {
    "optuna",
    "joblib",
    "submitit",
    "hydra_plugins.hydra_joblib_launcher",
    "hydra_plugins.hydra_submitit_launcher",
}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` or stop with one line naming the extra (exit status 2)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or ""
        if missing.split(".")[0] not in _EXTRA_MODULES and missing not in _EXTRA_MODULES:
            raise  # not a package of the extra: a real error
        print(
            f"ganrun: error: {what} needs the package {missing!r}, which is not installed: {EXTRA}",
            file=sys.stderr,
        )
        sys.stderr.flush()
        raise SystemExit(2) from None


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def with_threads(
    config, job_overrides: Sequence[Sequence[str]], threads: int | None
) -> list[list[str]]:
    """Each job's overrides plus ``trainer.threads=<threads>``, so that parallel jobs
    share the cores instead of each starting torch's one-thread-per-core pool. Left
    alone: jobs of a command without ``trainer.threads`` (not ``ganrun train``), a
    config or command line that sets it already, and ``threads=None``."""
    from omegaconf import OmegaConf

    jobs = [list(o) for o in job_overrides]
    if threads is None or config is None:
        return jobs
    trainer = OmegaConf.select(config, "trainer")
    if trainer is None or "threads" not in trainer or trainer.get("threads") is not None:
        return jobs
    return [
        o if any(_key(x) == "trainer.threads" for x in o) else [*o, f"trainer.threads={threads}"]
        for o in jobs
    ]


def threads_for(cpus: int, parallel: int) -> int:
    """Threads per job when ``parallel`` jobs share ``cpus`` cores (at least one)."""
    return max(1, int(cpus) // max(1, int(parallel)))


# ganrun's conf/hydra/launcher/ files that have the name of a launcher plugin's own
# config (registered in Hydra's ConfigStore). Hydra would validate such a file against
# that config ("automatic schema matching", deprecated since Hydra 1.1): it warns, and
# refuses ganrun's extra keys. docs/ARCHITECTURE.md, "Sweeps".
SHADOWED = {"hydra/launcher": ("joblib", "submitit_local")}


def forget_shadowed_configs(search_path) -> None:
    """Drop the plugins' ConfigStore entries that ganrun's own files replace — only for
    a Hydra app whose config search path is ganrun's conf/ (another Hydra app in the
    same environment keeps the plugins' configs)."""
    from pathlib import Path

    from hydra.core.config_store import ConfigStore

    from ganrun.paths import conf_dir

    ours = conf_dir().resolve()
    paths = [
        e.path.removeprefix("file://")
        for e in search_path.get_path()
        if e.path and "://" not in e.path.removeprefix("file://")
    ]
    if not any(Path(p).resolve() == ours for p in paths):
        return
    repo = ConfigStore.instance().repo
    for group, names in SHADOWED.items():
        node = repo
        for part in group.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            for name in names:
                if (ours / group / f"{name}.yaml").is_file():
                    node.pop(f"{name}.yaml", None)


def hydra_group_options(group: str) -> list[str]:
    """The options of a ``hydra/...`` group: ganrun's files in conf/hydra/ and what
    Hydra and its plugins provide (``basic``, ``submitit_slurm``, ...)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path

    from ganrun.paths import conf_dir

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf_dir())))
    return sorted(set(loader.get_group_options(group)))

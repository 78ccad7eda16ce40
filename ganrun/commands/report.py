"""ganrun report DIR [DIR ...] [out=<folder>]

Reads run dirs (a multirun dir, a run dir, a folder of either, or several) and
writes report.md, report.csv, report_groups.csv, one PNG per score and a
self-contained report.html (``ganrun.report``) into out= (default: the DIR, when
one is given). Bad input (no such folder, no run in it) is one line, exit
status 2, and nothing is written.

Hydra owns argv, and a bare path is not an override, so ``command_line`` turns
the positional DIRs into ``dirs=['a','b']`` before Hydra sees them;
``dirs=...`` works as well.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig

from ganrun.commands import report_errors
from ganrun.errors import ConfigError
from ganrun.paths import conf_dir

USAGE = "ganrun report <multirun or run dir> [more dirs ...] [out=<folder>]"
KEYS = ("dirs", "out")


@dataclass
class ReportConfig:
    dirs: Any = MISSING  # a folder or a list of folders
    out: Optional[str] = None  # noqa: UP045 (OmegaConf needs typing.Optional)


def register() -> None:
    ConfigStore.instance().store(name="report_schema", node=ReportConfig)


def _quote(path: str) -> str:
    """A Hydra quoted string: quotes escaped, and no interpolation."""
    return "'" + path.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${") + "'"


# Hydra's flags that take the next argument as their value (--cfg job), and
# --info's optional one
_FLAG_VALUE = {
    "--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
    "--config-dir", "-cd", "--experimental-rerun",
}  # fmt: skip
_INFO = ("--info", "-i")
_INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _is_dir_argument(arg: str, previous: str | None) -> bool:
    if arg.startswith("-") or previous in _FLAG_VALUE:
        return False
    if previous in _INFO and arg in _INFO_VALUES:
        return False
    if "=" not in arg:
        return True
    key = arg.split("=", 1)[0].lstrip("+~")
    # a folder named like an override (Hydra's override_dirname: model=dcgan,seed=0)
    return key not in KEYS and not key.startswith("hydra") and Path(arg).exists()


def command_line(args: list[str]) -> list[str]:
    """``a b out=x`` -> ``dirs=['a','b'] out=x`` (Hydra cannot take a bare path)."""
    is_dir = [_is_dir_argument(a, p) for a, p in zip(args, [None, *args])]
    dirs = [a for a, d in zip(args, is_dir) if d]
    rest = [a for a, d in zip(args, is_dir) if not d]
    named = any(a.split("=", 1)[0] == "dirs" for a in rest)
    hydra_only = any(a.startswith("-") and a not in ("-m", "--multirun") for a in rest)
    if dirs and named:
        _fail(f"give the folders either as arguments or as dirs=, not both: {USAGE}")
    if not dirs and not named and not hydra_only:
        _fail(f"no folder given: {USAGE}")
    if not dirs:
        return rest
    return [f"dirs=[{','.join(_quote(d) for d in dirs)}]", *rest]


def _fail(message: str) -> None:
    print(f"ganrun: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def dirs_of(cfg: DictConfig) -> list[str]:
    value = cfg.dirs
    items = list(value) if isinstance(value, (ListConfig, list, tuple)) else [value]
    if not items or any(not isinstance(d, str) or not d for d in items):
        raise ConfigError(f"dirs must be a folder or a list of folders: {USAGE}")
    return [str(d) for d in items]


def report(cfg: DictConfig) -> list[Path]:
    from ganrun.report import status_counts, write_report

    files, summary = write_report(dirs_of(cfg), cfg.out)
    print(f"{len(summary.runs)} run(s): {status_counts(summary.runs)}")
    for f in files:
        print(f)
    return files


@hydra.main(config_path=str(conf_dir()), config_name="report", version_base="1.3")
def main(cfg: DictConfig):
    report_errors(lambda: report(cfg))


register()

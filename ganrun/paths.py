"""Where the YAML config tree lives.

A wheel (`pip install .`) ships it inside the package as ``ganrun/conf``; a source
checkout or editable install has it at the top level beside ``ganrun/``. Hydra gets
an absolute path: a relative ``config_path`` is resolved as a Python module under
a console script and fails ("Primary config module 'conf' not found").
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def conf_dir() -> Path:
    for candidate in (_PKG / "conf", _PKG.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"ganrun's config tree is missing (looked in {_PKG / 'conf'} and {_PKG.parent / 'conf'})"
    )


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files in conf/<group>/."""
    folder = conf_dir() / group
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def config_groups() -> list[str]:
    root = conf_dir()
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir() and any(p.glob("*.yaml"))
    )

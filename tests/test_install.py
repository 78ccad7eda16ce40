"""`pip install .` (a wheel, not only -e) gives a working ganrun with its YAML tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 and "hatchling" in (r.stderr + r.stdout):
        pytest.skip("hatchling (a dev dependency) is not installed; `make test` installs it")
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("ganrun-*.whl")
    return whl


def test_wheel_ships_the_config_tree(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = REPO / "conf"
    expected = {f"ganrun/conf/{p.relative_to(conf).as_posix()}" for p in conf.rglob("*.yaml")}
    assert expected and expected <= names
    assert not any(n.startswith("conf/") for n in names)  # no top-level `conf` package
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_runs_outside_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import ganrun.paths as p, ganrun; print(p.conf_dir()); print(ganrun.__file__)"
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    conf, module = r.stdout.split()
    assert Path(conf) == target / "ganrun" / "conf" and Path(module).is_relative_to(target)
    run = [sys.executable, "-c", "from ganrun.cli import main; main()"]
    r = subprocess.run(
        [*run, "train", "model=vanilla", "--cfg", "job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "_target_: ganrun.models.vanilla.Generator" in r.stdout
    r = subprocess.run(
        [*run, "train", "model=nope"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert r.returncode == 2 and "model=nope is not an option" in r.stderr

"""Help, completion and config errors answer without importing torch (issue 17: they
took seconds because every command imported torch before anything was checked).
One fresh interpreter runs them all through ``cli.main`` and reports which of them
left torch in ``sys.modules``: a test on modules, not on time."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import cli_env

_PROBE = r"""
import contextlib, io, json, os, sys
from hydra.core.global_hydra import GlobalHydra
from ganrun import cli

CASES = [
    ["--help"],
    ["train", "--help"],
    ["sample", "--help"],
    ["eval", "--help"],
    ["report", "--help"],
    ["train", "--cfg", "job", "model=wgan_gp"],
    ["train", "model=dcgna"],
    ["train", "trainer.stepz=3"],
    ["train", "+foo=bar"],
    ["sample", "ckpt=x", "n=-"],
    ["train", "seed=0,1", "--cfg", "job"],
    ["train", "-m", "seed=0,1", "--cfg", "job"],
    ["train", "-sc", "query=bash"],
    ["-sc", "install=bash"],
]
os.environ["COMP_LINE"] = "ganrun train model="
report = []
for args in CASES:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(list(args))
        except SystemExit as e:
            code = e.code
    GlobalHydra.instance().clear()
    report.append({"args": args, "code": code, "out": out.getvalue()[:4000] + out.getvalue()[-4000:],
                   "err": err.getvalue()[-500:], "torch": "torch" in sys.modules})
print(json.dumps(report))
"""


def test_help_completion_and_config_errors_do_not_import_torch(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=tmp_path, env=cli_env(), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    for case in report:
        assert not case["torch"], f"ganrun {' '.join(case['args'])} imported torch"
    by = {" ".join(c["args"]): c for c in report}
    # they did what they are for
    assert by["train --help"]["code"] == 0 and "model: " in by["train --help"]["out"]
    assert "ganrun train" in by["train --help"]["out"]  # its own name, not Hydra's "train"
    assert "${" not in by["train --help"]["out"]  # the recipe's numbers, resolved
    cfg = by["train --cfg job model=wgan_gp"]
    assert cfg["code"] == 0 and "n_critic: 5" in cfg["out"] and "${" not in cfg["out"]
    for bad in (
        "train model=dcgna",
        "train trainer.stepz=3",
        "train +foo=bar",
        "sample ckpt=x n=-",
        "train seed=0,1 --cfg job",  # Hydra's answers were several lines, a traceback
        "train -m seed=0,1 --cfg job",
    ):
        case = by[bad]
        assert case["code"] == 2 and case["err"].count("\n") == 1, case
        assert case["err"].startswith("ganrun: error: "), case
    assert "model=dcgan" in by["train -sc query=bash"]["out"].split()
    assert by["-sc install=bash"]["out"].rstrip().endswith("_ganrun_completion ganrun")
    # the reading commands' help needs no torch either
    assert all(by[f"{c} --help"]["code"] == 0 for c in ("sample", "eval", "report"))

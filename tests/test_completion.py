"""Tab completion (issue 17): `eval "$(ganrun train -sc install=bash)"` registers
`ganrun` (not Hydra's app name), and TAB offers the subcommands after `ganrun`, and the
groups, options and keys of each subcommand's own config after it; `COMP_LINE=...
ganrun train -sc query=bash` answers. The query is checked in-process for every
subcommand, and the installed script for real: sourced in bash (and zsh, where it is
installed), its completion function called as the shell calls it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ganrun import cli, completion
from tests.conftest import cli_env, ganrun_exe


@pytest.mark.parametrize(
    "line, offered, not_offered",
    [
        ("ganrun ", ["train", "sample", "eval", "fit-evaluator", "fetch-weights", "report"], []),
        ("ganrun fi", ["fit-evaluator"], ["train", "fetch-weights"]),
        ("ganrun train model=", ["model=dcgan", "model=wgan_gp", "model=vanilla"], ["loss=hinge"]),
        ("ganrun train model=wg", ["model=wgan", "model=wgan_gp"], ["model=dcgan"]),
        ("ganrun train ", ["model=", "loss=", "trainer.", "seed=", "resume="], ["ckpt="]),
        ("ganrun train trainer.st", ["trainer.steps="], ["trainer.batch_size="]),
        ("ganrun train model=sngan optimizer.lr_", ["optimizer.lr_d=", "optimizer.lr_g="], []),
        ("ganrun train -m hydra/launcher=", ["hydra/launcher=joblib", "hydra/launcher=basic"], []),
        ("ganrun train --c", ["--cfg", "--config-dir"], []),
        # each subcommand completes its own config, not train's groups
        ("ganrun sample ", ["ckpt=", "n=", "out=", "truncation="], ["model=", "loss="]),
        ("ganrun eval ", ["ckpt=", "metrics.", "n="], ["model="]),  # a list: Hydra offers its items
        ("ganrun fit-evaluator data", ["dataset="], []),
        ("ganrun fetch-weights ", ["out="], ["model="]),
        ("ganrun report ", ["dirs=", "out="], ["model="]),
        ("ganrun nosuch ", [], ["model="]),
    ],
)
def test_query_offers_commands_groups_options_and_keys(line, offered, not_offered):
    got = completion.query(line)
    for word in offered:
        assert word in got, (line, got)
    for word in not_offered:
        assert word not in got, (line, got)


def test_comp_line_query_install_and_bad_use_through_main(monkeypatch, capsys):
    monkeypatch.setenv("COMP_LINE", "ganrun train model=dc")
    monkeypatch.setenv("COMP_POINT", str(len("ganrun train model=dc")))
    cli.main(["train", "-sc", "query=bash"])  # the issue's `Error parsing override 'train'`
    assert capsys.readouterr().out.split() == ["model=dcgan"]
    cli.main(["-sc", "query=bash"])  # what the installed script runs
    assert capsys.readouterr().out.split() == ["model=dcgan"]

    monkeypatch.setattr("sys.argv", ["/somewhere/bin/ganrun", "train", "-sc", "install=bash"])
    cli.main(["train", "-sc", "install=bash"])
    script = capsys.readouterr().out
    last = script.strip().splitlines()[-1]
    assert last == "complete -o nospace -o default -F _ganrun_completion ganrun", last
    assert "-sc query=bash" in script and "hydra_bash_completion" not in script
    cli.main(["-sc", "install=zsh"])
    assert "bashcompinit" in capsys.readouterr().out
    cli.main(["-sc", "uninstall=bash"])
    assert "complete -r ganrun" in capsys.readouterr().out

    with pytest.raises(SystemExit) as e:
        cli.main(["train", "-sc", "install=fish"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "install=bash" in err


# what the shell does on TAB: set COMP_LINE/COMP_POINT/COMP_WORDS and call the function
_CALL = r"""
try() {
  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
  COMP_WORDS=($COMP_LINE); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  _ganrun_completion
  printf '%s|' "${COMPREPLY[@]}"; echo
}
try "ganrun tr"
try "ganrun train model=dc"
try "ganrun train trainer.st"
"""


def _installed(shell: str, tmp_path: Path) -> list[str]:
    exe = ganrun_exe()
    env = cli_env(PATH=f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env["ZDOTDIR"] = str(tmp_path)  # no user zshrc
    script = f'eval "$(ganrun train -sc install={shell})"\n' + _CALL
    r = subprocess.run(
        [shell, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    return r.stdout.splitlines()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_installed_script_completes_in_bash(tmp_path):
    # bash replaces the text after the last `=` (a word break), so the replies are values
    assert _installed("bash", tmp_path) == ["train |", "dcgan |", "trainer.steps=|"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="no zsh")
def test_installed_script_completes_in_zsh(tmp_path):
    # zsh (bashcompinit) replaces the whole word
    assert _installed("zsh", tmp_path) == ["train |", "model=dcgan |", "trainer.steps=|"]

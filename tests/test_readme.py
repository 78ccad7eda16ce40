"""Every command line of README.md (and, slow, of docs/*.md) parses and composes as
`ganrun` would run it (cli.check_command_line: the preflight's config checks, no
training, no checkpoint read), and every `make` line names a target that exists, so
the docs cannot drift from the code."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ganrun import cli
from ganrun.paths import config_groups, group_options

REPO = Path(__file__).resolve().parent.parent
PLACEHOLDER = "PLACEHOLDER"


def command_lines(path: Path, prefixes=("ganrun", "make"), inline: bool = True) -> list[str]:
    """Lines of fenced code blocks, and (``inline``) code spans, that start with a command."""
    text = path.read_text()
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    # a line continued with a backslash is one command
    lines = [line for b in blocks for line in re.sub(r"\\\n\s*", " ", b).splitlines()]
    if inline:
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    start = re.compile(r"^\s*(?:\$\s*)?(" + "|".join(prefixes) + r")\s")
    found = []
    for line in lines:
        if start.match(line):
            found.append(re.sub(r"\s+#.*$", "", line.strip().lstrip("$ ")).strip())
    return list(dict.fromkeys(found))


def _argv(line: str) -> list[str]:
    """The arguments after `ganrun`, placeholders (<run>) filled: a group's with one of
    its options, anything else with a name."""
    args = shlex.split(re.sub(r"<[^>]*>", PLACEHOLDER, line))[1:]
    groups = set(config_groups())
    out = []
    for a in args:
        key, eq, value = a.partition("=")
        if eq and PLACEHOLDER in value and key.lstrip("+") in groups:
            a = f"{key}={group_options(key.lstrip('+'))[0]}"
        out.append(a)
    return out


_CHECKED: set[str] = set()


def _check_ganrun(line: str) -> None:
    if line in _CHECKED:  # `make train` runs a line the README has already
        return
    try:
        cli.check_command_line(_argv(line))
    except SystemExit as e:
        raise AssertionError(f"{line!r} does not compose (exit {e.code})") from None
    _CHECKED.add(line)


def _check_make(line: str) -> None:
    """`make -n` knows the target; a `ganrun` line it would run is checked too."""
    args = shlex.split(line)[1:]
    r = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, f"{line!r}: {r.stderr.strip()}"
    for printed in r.stdout.splitlines():
        words = printed.split()
        if words and Path(words[0]).name == "ganrun":
            _check_ganrun(" ".join(["ganrun", *words[1:]]))


def test_readme_commands_parse_and_compose(capsys):
    lines = command_lines(REPO / "README.md")
    ganrun_lines = [x for x in lines if x.startswith("ganrun ")]
    make_lines = [x for x in lines if x.startswith("make ")]
    # the README's examples are all found (a change of its layout must not hide them)
    assert len(ganrun_lines) >= 30 and len(make_lines) >= 5, lines
    assert any("dataset.root=~/" in x for x in ganrun_lines)  # `~` is expanded
    for line in ganrun_lines:
        _check_ganrun(line)
    if shutil.which("make"):
        for line in make_lines:
            _check_make(line)
    capsys.readouterr()


def test_a_wrong_command_line_is_caught(capsys):
    """The check itself: a misspelt option and an unknown key fail it."""
    for bad in ("ganrun train model=dcgna", "ganrun train trainer.stepz=3"):
        with pytest.raises(AssertionError, match="does not compose"):
            _check_ganrun(bad)
    assert "model=dcgna is not an option" in capsys.readouterr().err


@pytest.mark.slow  # ~100 lines: 20-40 s
def test_docs_commands_parse_and_compose(capsys):
    failures = []
    for doc in sorted((REPO / "docs").glob("*.md")):
        # code blocks only: prose names commands without their arguments
        for line in command_lines(doc, prefixes=("ganrun",), inline=False):
            argv = _argv(line) if "..." not in line else []  # `...`: an elided tail
            if argv and argv[0] in cli.COMMANDS:  # not `ganrun <command> ...`
                try:
                    _check_ganrun(line)
                except AssertionError as e:
                    failures.append(f"{doc.name}: {e}: {capsys.readouterr().err.strip()}")
    capsys.readouterr()
    assert not failures, "\n".join(failures)

"""Shell completion for ``ganrun``: ``eval "$(ganrun -sc install=bash)"``.

Hydra's own completion script does not fit a program whose first argument is a
subcommand: it registers ``basename(sys.argv[0])`` (here ``ganrun train``, two
names) and asks ``ganrun -sc query=bash``, which ganrun read as a command called
``-sc``. So ganrun prints its own script (the same for every subcommand, and for
``ganrun -sc install=bash``) and answers the query itself: the subcommand names
after ``ganrun``, Hydra's flags after ``-``, and otherwise Hydra's completion
(``CompletionPlugin._query``: groups, options, keys, values, ``./``-paths) over the
config of the subcommand named in the line. Nothing here imports torch: a TAB
answers in well under a second.

zsh uses the same script through ``bashcompinit`` (what Hydra's zsh support does);
``install=zsh`` prints the lines that load it first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SHELLS = ("bash", "zsh")
ACTIONS = ("install", "uninstall", "query")
FLAGS = (
    "-m", "--multirun", "--help", "--hydra-help", "--cfg", "--resolve", "--info",
    "--package", "--config-dir", "-sc", "--shell-completion", "--version",
)  # fmt: skip

_BASH = r"""# ganrun's tab completion (bash; zsh through bashcompinit): eval "$(ganrun -sc install=bash)"
_ganrun_completion()
{
    local line="${COMP_LINE:0:$COMP_POINT}"
    local cur="${line##*[[:space:]]}"
    local exe="${line#"${line%%[![:space:]]*}"}"
    exe="${exe%%[[:space:]]*}"
    local choices
    choices=$(COMP_LINE="$line" COMP_POINT="${#line}" "$exe" -sc query=bash 2>/dev/null) || return 0
    # bash replaces only the text after the last word-break character (= and :)
    local breaks="" prefix=""
    [[ "$COMP_WORDBREAKS" == *=* ]] && breaks="$breaks="
    [[ "$COMP_WORDBREAKS" == *:* ]] && breaks="$breaks:"
    [[ -n "$breaks" ]] && prefix="${cur%"${cur##*[$breaks]}"}"
    COMPREPLY=()
    local item
    while IFS= read -r item; do
        [[ -n "$item" ]] && COMPREPLY+=("${item#"$prefix"}")
    done <<< "$choices"
    # a finished word gets its space; a group (model=), a node (trainer.) or a folder waits
    if [[ ${#COMPREPLY[@]} -eq 1 ]]; then  # (no [0]: zsh counts from 1)
        local only="${COMPREPLY[*]}"
        [[ "$only" != *[=./] ]] && COMPREPLY=("$only ")
    fi
    return 0
}
complete -o nospace -o default -F _ganrun_completion PROG
"""

_ZSH_PRELUDE = """# zsh runs the bash completion through bashcompinit
(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }
autoload -U +X bashcompinit && bashcompinit
"""


def program_name() -> str:
    """The name the shell knows ganrun by (the console script's, else ``ganrun``)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    name = name.split()[0] if name.split() else ""
    if not name or name.endswith(".py") or name in ("-c", "-m", "python", "python3"):
        return "ganrun"
    return name


def script(shell: str, prog: str | None = None) -> str:
    prog = prog or program_name()
    text = _BASH.replace("PROG", prog)
    return (_ZSH_PRELUDE + text) if shell == "zsh" else text


def uninstall_script(prog: str | None = None) -> str:
    prog = prog or program_name()
    return f"complete -r {prog} 2>/dev/null\nunset -f _ganrun_completion\n"


def query(line: str) -> list[str]:
    """The completions of the last word of ``line`` (``ganrun train model=``)."""
    from ganrun.cli import COMMANDS

    words = line.split()
    new_word = not line or line[-1].isspace()
    args = words[1:]  # the program name goes
    if not args or (len(args) == 1 and not new_word):
        typed = args[0] if args else ""
        found = [c for c in COMMANDS if c.startswith(typed)]
        return found + [f for f in ("--help",) if typed.startswith("-") and f.startswith(typed)]
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        return []
    current = "" if new_word else rest[-1]
    if current.startswith("-"):
        return sorted(f for f in FLAGS if f.startswith(current))
    text = " ".join(rest) + (" " if new_word else "")
    return _hydra_query(command, text)


def _hydra_query(command: str, text: str) -> list[str]:
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra.core.global_hydra import GlobalHydra

    from ganrun.cli import CONFIG_NAMES, register_schemas
    from ganrun.paths import conf_dir

    register_schemas(command)
    config = CONFIG_NAMES[command]
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name=config):
            loader = GlobalHydra.instance().config_loader()
            found = BashCompletion(loader)._query(config_name=config, line=text)
    except (Exception, SystemExit):  # a line Hydra cannot read (an unknown flag): no suggestion
        return []
    return [w for w in found if _group_of(w) in _own_groups(config) or _group_of(w) is None]


def _group_of(word: str) -> str | None:
    """The config group a suggestion chooses (``model=dcgan`` -> model), None for a key."""
    from ganrun.paths import config_groups

    name = word.lstrip("+~").split("=", 1)[0].rstrip("/")
    groups = set(config_groups())
    return name if name in groups or any(g.startswith(name + "/") for g in groups) else None


def _own_groups(config: str) -> set[str]:
    """The groups a command's config uses: those in its defaults list, and Hydra's.
    Hydra offers every group of the search path, so ``ganrun sample`` was offered
    ``model=`` and ``loss=``, which it does not read."""
    from omegaconf import OmegaConf

    from ganrun.paths import conf_dir, config_groups

    own = {g for g in config_groups() if g.startswith("hydra")} | {"hydra"}
    top = OmegaConf.load(conf_dir() / f"{config}.yaml")
    for entry in top.get("defaults", []) or []:
        if OmegaConf.is_dict(entry):
            own |= {str(k).removeprefix("override ").strip() for k in entry}
    return own


def main(args: list[str]) -> None:
    """``-sc install=bash | uninstall=bash | query=bash`` (``args`` after ``-sc``)."""
    from ganrun.cli import _fail

    what = args[0] if args else ""
    action, _, shell = what.partition("=")
    if action not in ACTIONS or shell not in SHELLS:
        _fail(
            f"-sc {what or '(nothing)'}: give one of "
            + ", ".join(f"{a}=bash" for a in ACTIONS)
            + ' (zsh: install=zsh); e.g. eval "$(ganrun -sc install=bash)"'
        )
    if action == "install":
        print(script(shell), end="")
    elif action == "uninstall":
        print(uninstall_script(), end="")
    else:
        line = os.environ.get("COMP_LINE")
        if line is None:
            _fail("-sc query=bash reads the line to complete from COMP_LINE, which is not set")
        point = os.environ.get("COMP_POINT", "")
        if point.isdigit():
            line = line[: int(point)]
        print("\n".join(query(line)))

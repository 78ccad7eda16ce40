"""`ganrun <command> [hydra overrides and flags]`.

The subcommand is popped from argv and the rest is handed to that command's
@hydra.main function, so -m/--multirun, --cfg, --help, overrides and output
dirs behave as in any Hydra app. Before that, a preflight composes the config
once and checks it, so bad input gets one clear line and exit status 2 —
before Hydra creates a run dir or anything is written.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ganrun.errors import GanrunError

COMMANDS = {
    "train": (
        "ganrun.commands.train",
        "train",
        "train a model: ganrun train model=dcgan dataset=cifar10",
    ),
    "sample": (
        "ganrun.commands.sample",
        "sample",
        "write samples: ganrun sample ckpt=<run dir> n=64 out=grid.png",
    ),
    "eval": (
        "ganrun.commands.eval",
        "evaluate",
        "score checkpoints: ganrun eval ckpt=<run dir> metrics=[fid,is,kid,prc] n=10000",
    ),
    "fit-evaluator": (
        "ganrun.commands.fit_evaluator",
        "fit_evaluator",
        "fit the offline evaluator: ganrun fit-evaluator dataset=mnist_embedded",
    ),
    "fetch-weights": (
        "ganrun.commands.fetch_weights",
        "fetch_weights",
        "download and verify the InceptionV3 weights for IS/FID/KID",
    ),
    "report": (
        "ganrun.commands.report",
        "report",
        "tables, plots and report.html of run dirs: ganrun report multirun/<date>/<time>",
    ),
}
# commands whose top config file is not named after them (conf/<name>.yaml)
CONFIG_NAMES = {name: config for name, (_, config, _) in COMMANDS.items()}

USAGE = (
    "usage: ganrun <command> [key=value ...] [-m] [--help] [--cfg job]\n\ncommands:\n"
    + "\n".join(f"  {name:<14} {text}" for name, (_, _, text) in COMMANDS.items())
)

# Flags after which Hydra does something other than run the job, or which change
# where the config comes from: preflight leaves those to Hydra.
_HYDRA_ONLY = {
    "--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--resolve", "--package", "-p",
    "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--shell-completion", "-sc",
    "--run", "-r", "--experimental-rerun",
}  # fmt: skip
_MULTIRUN = {"-m", "--multirun"}
_MAX_PREFLIGHT_JOBS = 64


def _one_line(e: BaseException) -> str:
    """First lines of an exception and its causes, joined: Hydra's composition
    errors put the real reason in the cause."""
    parts: list[str] = []
    while e is not None and len(parts) < 3:
        text = str(e).strip()
        first = text.splitlines()[0].strip().rstrip(".") if text else type(e).__name__
        if (
            first and "$" not in first and first not in parts
        ):  # skip OmegaConf's unformatted templates
            parts.append(first)
        e = e.__cause__ or e.__context__
    return ": ".join(parts)


def _unknown_key_message(job: list[str], command: str) -> str | None:
    """'trainer.foo is not a setting of trainer; valid: ...' for an override of
    a key that does not exist (Hydra's own message does not list the valid ones)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, OmegaConf

    from ganrun.paths import config_groups

    groups = set(config_groups())
    parsed = OverridesParser.create().parse_overrides(job)
    # compose with the group choices only, then look for the keys' parents
    keep = [
        t
        for ov, t in zip(parsed, job)
        if ov.key_or_group in groups and not ov.get_key_element().startswith(("+", "~"))
    ]
    try:
        base = _compose(command, keep)
    except Exception:
        return None
    for ov in parsed:
        key = ov.key_or_group
        if ov.get_key_element().startswith(("+", "~")) or key in groups:
            continue
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(base, parent, throw_on_missing=False) if parent else base
        # keys(), not `in`: `in` is False for a key whose value is missing (ckpt=???)
        if isinstance(node, DictConfig) and leaf not in node.keys():
            valid = ", ".join(str(k) for k in node.keys() if not str(k).startswith("_"))
            where = f"of {parent}" if parent else f"of ganrun {command}"
            return f"{key} is not a setting {where}; valid: {valid}"
    return None


def _parse_message(e: BaseException, raw: Sequence[str]) -> str:
    """'cannot parse <override>: <why>; <how to write it>', naming the one that fails."""

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    bad = None
    for text in raw:
        try:
            parser.parse_overrides([text])
        except Exception as one:
            bad, e = text, one
            break
    why = _one_line(e).removesuffix(": None")
    char = re.search(r"token recognition error at: '(.*?)'", why)
    if char:
        why = f"unexpected character {char.group(1)!r}"
    why = re.sub(r"^Error parsing override '.*?': ", "", why)
    what = f"cannot parse {bad!r}" if bad is not None else "cannot parse the overrides"
    return (
        f"{what}: {why}; write key=value, and quote a value with spaces or special "
        "characters: key='a b'"
    )


def _fail(message: str) -> None:
    print(f"ganrun: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _check_group_choices(overrides) -> None:
    from ganrun.paths import config_groups, group_options

    groups = set(config_groups())
    for ov in overrides:
        key = ov.key_or_group
        if key not in groups or ov.is_delete():
            continue
        values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.value()]
        for v in values:
            vals = v if isinstance(v, list) else [v]
            options = group_options(key)
            if key.startswith("hydra/"):  # Hydra's and its plugins' options too
                from ganrun.sweepers import hydra_group_options

                options = hydra_group_options(key)
            for item in vals:
                if str(item) not in options:
                    _fail(f"{key}={item} is not an option; choose from: {', '.join(options)}")


def _check_single_choices(overrides, command: str) -> None:
    """A list for a group that takes one option (model=[dcgan,vanilla] merged both
    recipes, and the error then blamed a parameter of one of them). The groups that
    take several are those whose default in the command's config file is a list."""
    from omegaconf import OmegaConf

    from ganrun.paths import conf_dir, config_groups

    groups = set(config_groups())
    try:
        top = OmegaConf.load(Path(conf_dir()) / f"{CONFIG_NAMES[command]}.yaml")
        several = {
            str(k)
            for entry in top.get("defaults", [])
            if OmegaConf.is_dict(entry)
            for k, v in entry.items()
            if OmegaConf.is_list(v)
        }
    except Exception:  # a config file Hydra will judge
        return
    for ov in overrides:
        key = ov.key_or_group
        if key in groups and key not in several and not ov.is_delete():
            if isinstance(ov.value(), list):
                _fail(
                    f"{key} takes one option, not a list: {key}=<option> "
                    f"(several at once: ganrun {command} -m {key}=a,b runs one job each)"
                )


def _expand(overrides, raw: Sequence[str]) -> list[list[str]] | None:
    """Single-run override lists for every job of a basic sweep (None if a
    sweep is not a plain list of choices, e.g. Optuna's interval())."""
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    axes: list[list[str]] = []
    for ov, text in zip(overrides, raw):
        if not ov.is_sweep_override():
            axes.append([text])
            continue
        if not isinstance(ov.value(), (ChoiceSweep, RangeSweep)):
            return None
        prefix = text.split("=", 1)[0]
        axes.append([f"{prefix}={v}" for v in ov.sweep_string_iterator()])
    jobs = [
        list(combo) for combo in itertools.islice(itertools.product(*axes), _MAX_PREFLIGHT_JOBS)
    ]
    return jobs or [[]]


def _compose(config_name: str, overrides: list[str], with_hydra: bool = False):
    from hydra import compose, initialize_config_dir

    from ganrun.config import register_configs
    from ganrun.paths import conf_dir

    register_configs()  # the schemas, also for a preflight called on its own (tests)
    config_name = CONFIG_NAMES.get(config_name, config_name)

    with initialize_config_dir(
        config_dir=str(conf_dir()), version_base="1.3", job_name=config_name
    ):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)


def _base(job: list[str], command: str):
    """The config composed with the job's group choices only: the schema and defaults
    that a message about a wrong value quotes (None if even that does not compose)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ganrun.paths import config_groups

    groups = set(config_groups())
    parsed = OverridesParser.create().parse_overrides(job)
    keep = [t for ov, t in zip(parsed, job) if ov.key_or_group in groups and not ov.is_delete()]
    try:
        return _compose(command, keep)
    except Exception:
        return None


# the overrides that say where Hydra's run dir goes, composed with each job
_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.output_subdir")


def _run_dir(cfg, multirun: bool, given: dict[str, str], sources: dict[str, str], command):
    """Where Hydra will make its run dir (or sweep dir), resolved now, and whether it
    writes into it: (folder, label, remedy, written), or None where only Hydra's
    runtime can resolve it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ganrun.cli_checks import interpolation_message

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = OmegaConf.select(cfg, key)
        written = multirun or OmegaConf.select(cfg, "hydra.output_subdir") is not None
    except OmegaConfBaseException as e:
        if "${hydra:" in given.get(key, ""):
            return None  # e.g. ${hydra:job.num}: Hydra's runtime fills it in
        raise GanrunError(interpolation_message(e, None, given)) from None
    label = sources.get(key) or f"the {'sweep' if multirun else 'run'} dir {folder}"
    if key not in sources and command == "train":
        remedy = "run from a folder you can write to, or choose one with " + key + "=<dir>"
    elif sources.get(key, "").startswith("out="):
        remedy = "choose another out=..."
    else:
        remedy = f"choose another with {key}=<dir>"
    return str(folder), label, remedy, written


def preflight(command: str, args: list[str], deep: bool = True) -> list[str]:
    """Check a command line; return it, possibly extended (resume).

    First what the config alone shows (the grammar, group options, keys, types,
    interpolations, required values: no torch is imported for these), then, with
    ``deep``, what needs building (``build.validate``: the targets' signatures, the
    data) and the run dir. ``deep=False`` checks that a command line parses and
    composes, and reads no checkpoint (resume=, ckpt= stay names): the README test."""
    if any(a.split("=", 1)[0] in _HYDRA_ONLY for a in args):
        return args
    from hydra.core.override_parser.overrides_parser import OverridesParser

    multirun = any(a in _MULTIRUN for a in args)
    raw = [a for a in args if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(raw)
    except Exception as e:  # OverrideParseException
        _fail(_parse_message(e, raw))
    _check_group_choices(parsed)
    _check_single_choices(parsed, command)

    user = [(ov, text) for ov, text in zip(parsed, raw) if not ov.key_or_group.startswith("hydra")]
    parsed_user, raw_user = [u[0] for u in user], [u[1] for u in user]
    if command == "train" and deep:
        args, raw_user, parsed_user = _train_resume_args(args, parsed, raw_user, parsed_user)
    if command == "sample":
        args = _sample_run_dir(args, parsed)

    from omegaconf import OmegaConf, open_dict

    from ganrun import cli_checks
    from ganrun.paths import config_groups

    groups = set(config_groups())
    final = [a for a in args if not a.startswith("-")]
    dir_overrides = [a for a in final if a.split("=", 1)[0].lstrip("+") in _DIR_KEYS]
    # what the user wrote for each place (a message names it), before resume= or
    # sample's out= filled in a run dir
    sources = {ov.key_or_group: text for ov, text in zip(parsed, raw) if text in dir_overrides}
    out = next((t for ov, t in zip(parsed, raw) if ov.key_or_group == "out"), None)
    if command == "sample" and "hydra.run.dir" not in sources and out:
        sources["hydra.run.dir"] = out
    elif command == "train" and "hydra.run.dir" not in sources:
        resume = next((t for ov, t in zip(parsed, raw) if ov.key_or_group == "resume"), None)
        if resume and any(a.startswith("hydra.run.dir=") for a in dir_overrides):
            sources["hydra.run.dir"] = f"the run dir of {resume}"
    run_dir = None
    jobs = _expand(parsed_user, raw_user) if multirun else [raw_user]
    if not deep and jobs:  # a docs check: one job per combination of group options
        jobs = list(
            {tuple(j for j in job if j.split("=", 1)[0] in groups): job for job in jobs}.values()
        )
    composed = []
    for job in jobs or []:  # what the config alone shows, for every job first
        try:
            cfg = _compose(command, job + dir_overrides, with_hydra=True)
        except Exception as e:
            _fail(
                _unknown_key_message(job, command)
                or cli_checks.composition_message(e, lambda j=job: _base(j, command), command)
                or _one_line(e)
            )
        given = {t.split("=", 1)[0].lstrip("+~"): t.split("=", 1)[-1] for t in job + dir_overrides}
        try:
            run_dir = _run_dir(cfg, multirun, given, sources, command)
            with open_dict(cfg):
                del cfg["hydra"]
            job_parsed = OverridesParser.create().parse_overrides(job)
            cli_checks.check_keys(cfg, job_parsed, groups, command)
            cli_checks.check_resolves(cfg, lambda j=job: _base(j, command), given)
        except GanrunError as e:
            _fail(str(e))

        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            _fail(f"{missing[0]} is required: ganrun {command} {missing[0]}=<value>")
        composed.append((job, cfg))
    if not deep:
        return args
    for job, cfg in composed:  # then what needs building (torch)
        try:
            if command == "train":
                from ganrun.build import validate
                from ganrun.commands.train import prepare

                cfg, _, _ = prepare(cfg, job)
                validate(cfg)
                from ganrun.training.evaluation import check_train_eval

                check_train_eval(cfg)
                if not multirun:  # before Hydra writes .hydra/ into a named run dir
                    from ganrun.training.rundir import preflight as run_dir_preflight

                    run_dir_preflight(list(args))
            elif command in ("eval", "fit-evaluator", "sample"):
                importlib.import_module(COMMANDS[command][0]).check(cfg)
        except GanrunError as e:
            _fail(str(e))
    if run_dir is not None:  # last: the config is right, only the place is not
        try:
            cli_checks.check_run_dir(*run_dir)
        except GanrunError as e:
            _fail(str(e))
    return args


def _train_resume_args(args, parsed, raw_user, parsed_user):
    """For resume=X: reuse the checkpoint's config-group choices (so keys of its
    model can be overridden) and its run dir, and write no new .hydra/ there."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    resume = [ov for ov in parsed if ov.key_or_group == "resume" and not ov.is_sweep_override()]
    if not resume or resume[-1].value() in (None, "null", ""):
        return args, raw_user, parsed_user
    from ganrun import checkpoint as ckpt  # torch: only for a resume

    try:
        path, state = ckpt.load(str(resume[-1].value()))
    except GanrunError as e:
        _fail(str(e))
    given = {ov.key_or_group for ov in parsed}
    extra = [
        f"{g}={v}"
        for g, v in (state.get("choices") or {}).items()
        if g not in given and not g.startswith("hydra")
    ]
    hydra_extra = []
    if "hydra.run.dir" not in given:
        hydra_extra.append(f"hydra.run.dir={ckpt.run_dir_of(path)}")
    if "hydra.output_subdir" not in given:
        hydra_extra.append("hydra.output_subdir=null")
    raw_user = extra + raw_user
    parsed_user = OverridesParser.create().parse_overrides(raw_user)
    return extra + hydra_extra + list(args), raw_user, parsed_user


def _sample_run_dir(args, parsed):
    """With an explicit out=..., Hydra's run dir is where the output goes, so no
    empty outputs/samples/<date>/<time> folder is left behind."""
    given = {ov.key_or_group: ov for ov in parsed}
    out = given.get("out")
    if (
        out is None
        or "hydra.run.dir" in given
        or out.is_sweep_override()
        or out.value() in (None, "")
    ):
        return args
    folder = Path(str(out.value()))
    per_image = given.get("per_image")
    if not (per_image is not None and str(per_image.value()).lower() == "true"):
        folder = folder.parent
    return [*args, f"hydra.run.dir={folder.resolve()}"]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    completion = next((i for i, a in enumerate(argv) if a in _COMPLETION), None)
    if completion is not None and completion <= 1:  # ganrun [<command>] -sc install=bash
        from ganrun import completion as shell

        shell.main(argv[completion + 1 :])
        return
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], expand_home(argv[1:])
    if command not in COMMANDS:
        _fail(f"unknown command {command!r}; choose from: {', '.join(COMMANDS)}")
    module_name, _, _ = COMMANDS[command]
    if command == "train" and not _shows(rest):  # a stop signal from here on: one line, 75
        from ganrun.signals import STOP, Interrupted

        STOP.install()
        try:
            _run(module_name, command, rest)
        except Interrupted as e:
            if any(a in _MULTIRUN for a in rest):  # between or inside a sweep's jobs
                line = f"{e}: the sweep stopped; rerun the same command to continue it"
            else:
                line = (
                    f"{e} during start-up: nothing was trained and the run dir's files are "
                    "as they were; rerun the same command to start"
                )
            print(f"ganrun: stopped: {line}", file=sys.stderr)
            from ganrun.errors import Stopped

            raise SystemExit(Stopped.exit_status) from None
        finally:  # for in-process callers (tests); a process exits anyway
            STOP.uninstall()
            STOP.reset()
        return
    _run(module_name, command, rest)


_COMPLETION = ("-sc", "--shell-completion")
# Hydra's flags after which nothing runs: answered without importing the command
# (and so torch), from the config alone
_SHOW = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--version")
# Hydra's flags that take the next argument as their value
_FLAG_VALUE = {
    "--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
    "--config-dir", "-cd", "--experimental-rerun", "--shell-completion", "-sc",
}  # fmt: skip
_INFO_VALUES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _shows(args: Sequence[str]) -> bool:
    return any(a.split("=", 1)[0] in _SHOW for a in args)


def overrides_of(args: Sequence[str]) -> list[str]:
    """The overrides of a command line: its flags and their values dropped."""
    out: list[str] = []
    previous = None
    for a in args:
        if a.startswith("-"):
            pass
        elif previous in _FLAG_VALUE or (previous in ("--info", "-i") and a in _INFO_VALUES):
            pass
        else:
            out.append(a)
        previous = a
    return out


_HOME = re.compile(r"^([+~]*[^=~'\"]+)=(~[^,\[\]{}()'\"]*)$")


def expand_home(args: Sequence[str]) -> list[str]:
    """``dataset.root=~/pictures`` -> ``dataset.root=/home/me/pictures``: the shell does
    not expand a ``~`` after ``key=``, and Hydra's grammar rejects it unquoted."""
    out = []
    for a in args:
        m = _HOME.match(a) if not a.startswith("-") else None
        if m:
            path = os.path.expanduser(m.group(2))
            if path != m.group(2):
                if not re.fullmatch(r"[\w./@%+:-]+", path):  # quote what the grammar would not take
                    path = "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"
                a = f"{m.group(1)}={path}"
        out.append(a)
    return out


def register_schemas(command: str) -> None:
    """The ConfigStore entries (and resolvers) a command's config needs, without
    importing the command: ganrun.config's, and report's own schema."""
    from ganrun.config import register_configs

    register_configs()
    if command == "report":
        from ganrun.commands.report import register

        register()


def _show(command: str, rest: list[str]) -> None:
    """``--help``, ``--cfg``, ``--info``: answered from the config alone, so the
    command's module, and torch, stay unloaded. ``--help`` is rendered here from
    Hydra's help template (Hydra's own lists the groups through ~100 config-repository
    copies: seconds); the rest goes to Hydra through a stand-in task that runs nothing.
    ``--cfg`` and ``--help`` show the config resolved (the recipe's numbers, not
    ``${oc.select:...}``) when it resolves, and as written when it does not. A group
    option or key that does not exist is one line, as without the flag."""
    import hydra

    from ganrun.paths import conf_dir

    register_schemas(command)
    multirun = any(a in _MULTIRUN for a in rest)
    if multirun and any(a.split("=", 1)[0] in ("--cfg", "-c", "--info", "-i") for a in rest):
        # Hydra's own answer is a ValueError traceback
        _fail("--cfg and --info show one job's config: drop -m and give one value per key")
    overrides = overrides_of(rest)
    helping = any(a in ("--help", "-h") for a in rest)
    cfg = _compose_to_show(command, overrides, drop_sweeps=helping)
    if cfg is not None and helping:
        _print(_help_text(cfg, "--resolve" in rest or _resolves(cfg)))
        return
    wants = any(a.split("=", 1)[0] in ("--cfg", "-c") for a in rest)
    if wants and "--resolve" not in rest and cfg is not None and _resolves(cfg):
        rest = [*rest, "--resolve"]

    def task(cfg) -> None:  # never called: these flags run nothing
        return None

    task.__module__ = COMMANDS[command][0]  # Hydra names the job after the module
    entry = hydra.main(
        config_path=str(conf_dir()), config_name=CONFIG_NAMES[command], version_base="1.3"
    )(task)
    sys.argv = [f"{Path(sys.argv[0]).name} {command}", *rest]
    entry()


def _print(text: str) -> None:
    """``text`` on stdout; a reader that stopped early (``| head``) is no error."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _compose_to_show(command: str, overrides: list[str], drop_sweeps: bool = False):
    """The command's config with ``overrides`` and Hydra's node (``drop_sweeps``:
    without the swept keys, for --help); a wrong option or key fails with ganrun's
    one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ganrun import cli_checks

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:
        _fail(_parse_message(e, overrides))
    _check_group_choices(parsed)
    if drop_sweeps:
        overrides = [t for ov, t in zip(parsed, overrides) if not ov.is_sweep_override()]
    try:  # a sweep without -m fails here: "seed=0,1: a comma makes a sweep; add -m ..."
        return _compose(command, overrides, with_hydra=True)
    except Exception as e:
        _fail(
            _unknown_key_message(overrides, command)
            or cli_checks.composition_message(e, lambda: _base(overrides, command), command)
            or _one_line(e)
        )


def _without_hydra(cfg):
    import copy

    from omegaconf import open_dict

    clean = copy.deepcopy(cfg)
    with open_dict(clean):
        clean.pop("hydra", None)
    return clean


def _resolves(cfg) -> bool:
    from omegaconf import OmegaConf

    try:
        OmegaConf.resolve(_without_hydra(cfg))
    except Exception:
        return False
    return True


def _help_text(cfg, resolve: bool) -> str:
    """Hydra's app help (``hydra.help.template``), with the groups listed from conf/."""
    import string

    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import get_args_parser
    from omegaconf import OmegaConf

    from ganrun.paths import config_groups, group_options

    def groups(hydra_ones: bool) -> str:
        if hydra_ones:  # Hydra's and its plugins' groups: only when a template asks
            from ganrun.sweepers import hydra_group_options

            names = [g for g in config_groups() if g.startswith("hydra/")]
            return "".join(f"{g}: {', '.join(hydra_group_options(g))}\n" for g in names)
        names = [g for g in config_groups() if not g.startswith("hydra")]
        return "".join(f"{g}: {', '.join(group_options(g))}\n" for g in sorted(names))

    template = str(cfg.hydra.help.template)
    values = {
        "FLAGS_HELP": Hydra.format_args_help(get_args_parser()),
        "APP_CONFIG_GROUPS": groups(False),
        "CONFIG": OmegaConf.to_yaml(_without_hydra(cfg), resolve=resolve),
    }
    if "HYDRA_CONFIG_GROUPS" in template:
        values["HYDRA_CONFIG_GROUPS"] = groups(True)
    return string.Template(template).safe_substitute(values)


def check_command_line(argv: Sequence[str]) -> list[str]:
    """``ganrun <argv>`` parsed and composed as ``main`` would before running it, and
    nothing run or read from disk (``preflight(deep=False)``); Hydra's flags are
    dropped. Fails as the CLI does (one line, SystemExit 2). For docs' command lines."""
    argv = list(argv)
    if not argv or argv[0] not in COMMANDS:
        _fail(f"unknown command {argv[0] if argv else ''!r}; choose from: {', '.join(COMMANDS)}")
    command, rest = argv[0], expand_home(argv[1:])
    if command == "report":
        from ganrun.commands.report import command_line

        rest = command_line(rest)
    register_schemas(command)
    if _shows(rest):
        _compose_to_show(command, overrides_of(rest))
        return rest
    rest = [a for a in rest if a in _MULTIRUN or not a.startswith("-")]
    return preflight(command, rest, deep=False)


def _under_torchrun() -> bool:
    """torchrun's environment with several processes (ganrun.training.distributed,
    which imports torch, is only loaded then)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def _name_sweep_jobs(args: list[str]) -> list[str]:
    """For ``-m`` without a ``hydra.sweep.subdir=``: the job dirs are named by the
    values the sweep varies (``0_seed-0``), which only the command line tells."""
    if not any(a in _MULTIRUN for a in args):
        return args
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ganrun.runname import sweep_subdir_override

    raw = [a for a in args if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(raw)
    except Exception:
        return args
    if any(ov.key_or_group == "hydra.sweep.subdir" for ov in parsed):
        return args
    swept = [
        ov.key_or_group
        for ov in parsed
        if ov.is_sweep_override() and not ov.key_or_group.startswith("hydra")
    ]
    return [*args, sweep_subdir_override(swept)] if swept else args


def _run(module_name: str, command: str, rest: list[str]) -> None:
    if command == "report":  # positional DIRs -> dirs=[...]: Hydra takes no bare paths
        from ganrun.commands.report import command_line

        rest = command_line(rest)
    if _shows(rest):
        _show(command, rest)
        return
    if command == "train" and _under_torchrun():  # rank 0 checks, every rank gets its run dir
        from ganrun.training import distributed

        rest = distributed.rank0_preflight(lambda r=rest: preflight(command, r), rest)
    else:
        rest = preflight(command, rest)
    if command == "train":
        rest = _name_sweep_jobs(rest)
    module = importlib.import_module(module_name)  # torch, for most: after the checks
    sys.argv = [f"{Path(sys.argv[0]).name} {command}", *rest]
    module.main()


if __name__ == "__main__":
    main()

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
    import re

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


def preflight(command: str, args: list[str]) -> list[str]:
    """Check a command line; return it, possibly extended (resume)."""
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
    if command == "train":
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
    for job in jobs or []:
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
        try:
            if command == "train":
                from ganrun.build import validate
                from ganrun.commands.train import prepare

                cfg, _, _ = prepare(cfg, job)
                validate(cfg)
                from ganrun.metrics.hook import check_train_eval

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

    from ganrun import checkpoint as ckpt

    resume = [ov for ov in parsed if ov.key_or_group == "resume" and not ov.is_sweep_override()]
    if not resume or resume[-1].value() in (None, "null", ""):
        return args, raw_user, parsed_user
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
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        _fail(f"unknown command {command!r}; choose from: {', '.join(COMMANDS)}")
    module_name, _, _ = COMMANDS[command]
    if command == "train":  # a stop signal from here on gets one line and exit status 75
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


def _run(module_name: str, command: str, rest: list[str]) -> None:
    module = importlib.import_module(module_name)
    if command == "report":  # positional DIRs -> dirs=[...]: Hydra takes no bare paths
        rest = module.command_line(rest)
    rest = preflight(command, rest)
    sys.argv = [f"{Path(sys.argv[0]).name} {command}", *rest]
    module.main()


if __name__ == "__main__":
    main()

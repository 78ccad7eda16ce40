"""Checks of a command line's composed config for ``cli.preflight``.

Hydra composes a wrong value or key with a message that names the wrong thing
or none at all, and some mistakes it composes without complaint: a key added
with ``+`` that nothing reads, a removed setting, an interpolation that only
fails when the job reads it (``seed='${oc.env:HOME}'``), a run dir that cannot
be made. Each function here raises ``ConfigError`` with one line that says what
is wrong and what would be right; the preflight prints it before Hydra runs.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf import nodes as oc_nodes
from omegaconf.errors import OmegaConfBaseException

from ganrun.errors import ConfigError
from ganrun.fsio import cause

_MERGING = "Error merging override "


# --------------------------------------------------------------------------- values
def format_value(value: Any) -> str:
    """``value`` as it is written in an override (true, null, [a,b])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, (dict, DictConfig)):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _node(cfg: DictConfig, key: str):
    """The node object at ``key`` (None when there is none), without resolving it."""
    parent_key, _, leaf = key.rpartition(".")
    try:
        parent = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
    except OmegaConfBaseException:
        return None
    if not isinstance(parent, DictConfig) or leaf not in parent.keys():
        return None
    return parent._get_node(leaf)


def expected_kind(node) -> str | None:
    """'an integer', 'a list', ... for a schema node (None when any value goes)."""
    if isinstance(node, ListConfig):
        kind = "a list"
    elif isinstance(node, DictConfig):
        kind = "a group of settings"
    elif isinstance(node, oc_nodes.BooleanNode):
        kind = "true or false"
    elif isinstance(node, oc_nodes.IntegerNode):
        kind = "an integer"
    elif isinstance(node, oc_nodes.FloatNode):
        kind = "a number"
    elif isinstance(node, oc_nodes.StringNode):
        kind = "a string"
    else:
        return None
    return f"{kind} or null" if node._is_optional() and kind != "a group of settings" else kind


def _example(key: str, node, given: str | None) -> str:
    """', e.g. key=<value>': the default, or the given scalar wrapped in a list."""
    if isinstance(node, ListConfig):
        if given and not given.startswith("[") and "$" not in given:
            return f", e.g. {key}=[{given}]"
    if node is None or node._is_missing() or node._is_interpolation():
        return ""
    try:
        value = node._value() if not isinstance(node, (DictConfig, ListConfig)) else node
        if isinstance(value, DictConfig):
            return ""
        return f", e.g. {key}={format_value(value)}"
    except Exception:
        return ""


def takes(key: str, base, given: str | None = None) -> str:
    """'seed takes an integer, e.g. seed=0' from the schema in ``base`` (a config, or a
    function that composes one: only called when needed); '' if unknown."""
    base = base() if callable(base) else base
    node = _node(base, key) if base is not None else None
    kind = expected_kind(node) if node is not None else None
    if not kind:
        return ""
    return f"{key} takes {kind}{_example(key, node, given)}"


def _chain(e: BaseException):
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


def composition_message(e: BaseException, base, command: str) -> str | None:
    """One line for a composition error about one override's value (None if it is not)."""
    texts = [str(x).strip().splitlines()[0] if str(x).strip() else "" for x in _chain(e)]
    ambiguous = re.match(r"Ambiguous value for argument '(.*)'", texts[0] if texts else "")
    if ambiguous:
        override = ambiguous.group(1)
        key, _, value = override.partition("=")
        return (
            f"{override}: a comma makes a sweep; add -m to run one job per value "
            f"(ganrun {command} -m {override}), or where one list is meant: {key}=[{value}]"
        )
    merging = next((t for t in texts if t.startswith(_MERGING)), None)
    if merging is None:
        return None
    override = merging[len(_MERGING) :].strip()
    key, _, given = override.partition("=")
    key = key.lstrip("+~")
    whole = " ".join(str(x) for x in _chain(e))
    if override.startswith("~") and "does not support deletion" in whole:
        return (
            f"{override} removes a setting ganrun {command} needs; "
            f"set {key}=<value> instead of removing it"
        )
    hint = takes(key, base, given)
    if hint:
        return f"{override} is not valid: {hint}"
    reason = next((t for t in texts[1:] if t and "$" not in t), "")
    return f"{override} is not valid: {reason}" if reason else None


def interpolation_message(e: OmegaConfBaseException, base, given: dict[str, str]) -> str:
    """One line for an interpolation that does not resolve, or resolves to a wrong type."""
    key = str(getattr(e, "full_key", "") or "")
    msg = str(getattr(e, "msg", "") or e).strip().splitlines()[0]
    raw = given.get(key)
    what = f"{key}={raw}" if raw is not None else key
    env = re.search(r"Environment variable '([^']+)' not found", msg)
    if env:
        var = env.group(1)
        return (
            f"{what}: the environment variable {var} is not set; set it, or give a "
            f"default: ${{oc.env:{var},<default>}}"
        )
    value = re.search(r"Value '(.*)' of type '(\w+)' could not be converted", msg)
    hint = takes(key, base)
    if value:
        return f"{what} resolves to '{value.group(1)}', which is not valid: " + (hint or msg)
    missing = re.search(r"Interpolation key '([^']+)' not found", msg)
    if missing:
        return (
            f"{what}: ${{{missing.group(1)}}} names no setting; an interpolation refers to "
            "an existing key, e.g. ${trainer.steps}"
        )
    if "Missing mandatory value" in msg:
        return f"{what} refers to a setting that has no value: {msg.split(':', 1)[-1].strip()}"
    return f"{what} does not resolve: {msg}" + (f"; {hint}" if hint else "")


def check_resolves(cfg: DictConfig, base, given: dict[str, str]) -> None:
    """Every interpolation of the composed config resolves, to a value of the right type."""
    try:
        OmegaConf.resolve(copy.deepcopy(cfg))
    except OmegaConfBaseException as e:
        if not getattr(e, "full_key", None):  # some errors lose the key: find the override
            for key, value in given.items():
                if "${" not in value:
                    continue
                try:
                    OmegaConf.select(cfg, key, throw_on_missing=False)
                except OmegaConfBaseException:
                    e.full_key = key
                    break
        raise ConfigError(interpolation_message(e, base, given)) from None


# --------------------------------------------------------------------------- keys
def _dataclass_of(node: DictConfig):
    t = OmegaConf.get_type(node)
    return t if isinstance(t, type) and dataclasses.is_dataclass(t) else None


def _listing(node: DictConfig) -> str:
    return ", ".join(str(k) for k in node.keys() if not str(k).startswith("_"))


def _walk(node: Any, path: str = ""):
    if isinstance(node, DictConfig):
        yield path, node
        for k in node.keys():
            child = node._get_node(k)
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                yield from _walk(child, f"{path}.{k}" if path else str(k))


def _interpolations(cfg: DictConfig) -> list[str]:
    found: list[str] = []

    def visit(x):
        if isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, list):
            for v in x:
                visit(v)
        elif isinstance(x, str) and "${" in x:
            found.append(x)

    visit(OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False))
    return found


def _in_target(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` lies in (or is) a node with a ``_target_``: validate checks those."""
    parts = key.split(".")
    node: Any = cfg
    for p in parts[:-1]:
        if not isinstance(node, DictConfig) or p not in node.keys():
            return False
        node = node._get_node(p)
        if isinstance(node, DictConfig) and "_target_" in node.keys():
            return True
    return False


def check_keys(cfg: DictConfig, parsed, groups: set[str], command: str) -> None:
    """Keys the schema does not have (``+foo=bar``), schema keys removed (``~seed``),
    and keys added under free-form nodes that no setting, ``_target_`` parameter or
    interpolation reads."""
    given = {ov.key_or_group: ov for ov in parsed}
    for path, node in _walk(cfg):
        schema = _dataclass_of(node)
        if schema is None:
            continue
        fields = [f.name for f in dataclasses.fields(schema)]
        where = f"of {path}" if path else f"of ganrun {command}"
        for k in node.keys():
            if str(k) not in fields:
                full = f"{path}.{k}" if path else str(k)
                ov = given.get(full) or next(
                    (o for k2, o in given.items() if k2.startswith(full + ".")), None
                )
                text = ov.input_line if ov is not None else full
                raise ConfigError(
                    f"{text}: {full} is not a setting {where}; valid: {', '.join(fields)}"
                )
        for f in fields:
            if f not in node.keys():
                full = f"{path}.{f}" if path else f
                raise ConfigError(
                    f"~{full} removes a setting ganrun {command} needs; "
                    f"set {full}=<value> instead of removing it"
                )
    texts = None
    for ov in parsed:
        key = ov.key_or_group
        if not ov.get_key_element().startswith("+") or ov.get_key_element().startswith("++"):
            continue
        if key in groups or key.startswith("hydra") or "@" in ov.get_key_element():
            continue
        if _in_target(cfg, key):
            continue  # checked against the class's signature by validate
        parent_key = key.rpartition(".")[0]
        parent = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if parent_key else cfg
        if isinstance(parent, DictConfig) and _dataclass_of(parent) is not None:
            continue  # a schema node: the walk above judged it
        texts = texts if texts is not None else _interpolations(cfg)
        pattern = re.compile(r"(?<![\w.])" + re.escape(key) + r"(?![\w])")
        if any(pattern.search(t) for t in texts):
            continue  # read through an interpolation (a recipe value, say)
        raise ConfigError(
            f"{ov.input_line} adds {key}, which nothing reads (no setting, no parameter of a "
            f"_target_, no interpolation uses it); {_read_nearby(cfg, key, texts, command)}"
        )


_REFERENCE = re.compile(r"[A-Za-z_]\w*(?:\.\w+)+")


def _read_nearby(cfg: DictConfig, key: str, texts: list[str], command: str) -> str:
    """What is read near ``key``: the interpolated keys sharing the longest prefix with
    it (recipe values), else the settings of its nearest existing parent."""
    parts = key.split(".")
    refs = {r for t in texts for r in _REFERENCE.findall(t) if r != key}
    for n in range(len(parts) - 1, 1, -1):  # model.recipe.<group>...: read by interpolation
        prefix = ".".join(parts[:n]) + "."
        near = sorted(r[len(prefix) :] for r in refs if r.startswith(prefix))
        if near:
            more = f" (and {len(near) - 8} more)" if len(near) > 8 else ""
            return f"keys read under {prefix[:-1]}: {', '.join(near[:8])}{more}"
    for n in range(len(parts) - 1, -1, -1):
        parent_key = ".".join(parts[:n])
        node = OmegaConf.select(cfg, parent_key, throw_on_missing=False) if n else cfg
        if isinstance(node, DictConfig):
            names = [str(k) for k in node.keys() if not str(k).startswith("_")]
            names = [k for k in names if k != parts[n]]
            where = f"settings of {parent_key}" if n else f"settings of ganrun {command}"
            return f"{where}: {', '.join(names)}"
    return ""


# --------------------------------------------------------------------------- run dir
def check_run_dir(folder: str, label: str, remedy: str, written: bool) -> None:
    """The folder Hydra will make (or write into, when ``written``) can be made there:
    tried with an empty folder that is removed again, before Hydra tries."""
    p = Path(os.path.expanduser(folder or "."))
    probe_in = p
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise ConfigError(f"{label}: {p} is a file, not a folder; {remedy}")
        if not written:
            return
    else:
        probe_in = p.parent
        while not probe_in.exists() and probe_in != probe_in.parent:
            probe_in = probe_in.parent
        if not probe_in.is_dir():
            raise ConfigError(
                f"{label}: cannot create {p}: {probe_in} is a file, not a folder; {remedy}"
            )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ganrun-probe-", dir=probe_in))
    except OSError as e:
        what = f"write into {p}" if probe_in == p else f"create {p} in {probe_in}"
        raise ConfigError(f"{label}: cannot {what}: {cause(e)}; {remedy}") from None

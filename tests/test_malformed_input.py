"""Malformed command lines: one line, exit status 2, no traceback, nothing written.

Two kinds of test:

* ``CASES`` — a table of command lines that each printed a traceback, blamed the
  wrong key, succeeded silently or failed only after the run dir existed (issue
  15), with a fragment of the message each must give now. They run end to end
  through ``ganrun.cli.main`` in-process, from an empty working directory.
* a property test (hypothesis): generated malformed overrides — bad numbers,
  wrong types, unknown keys, unknown group options, broken interpolations, junk —
  added to a valid command line of every subcommand and fed to the preflight.
  Each must fail with one ``ganrun: error:`` line that names the override's key
  (or its text), and leave the working directory empty. Only invalid overrides
  are generated, and only the preflight runs, so a bad one that slipped through
  would fail the test rather than start a training run.
"""

from __future__ import annotations

import hashlib
import os
import string
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ganrun import cli
from ganrun.config import register_configs

# a train command line that, if a check ever let it through, trains for a second
QUICK = ["model.width=8", "model.z_dim=16", "trainer.steps=1", "trainer.batch_size=16"]
QUICK += ["trainer.device=cpu", "trainer.progress=false", "trainer.num_workers=0"]
QUICK += ["logger.tensorboard=false"]
UNSET = "GANRUN_TEST_SURELY_UNSET"


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint, and files that are not checkpoints."""
    from tests.conftest import run_train, tiny_overrides

    root = tmp_path_factory.mktemp("malformed")
    run_train(root / "run", tiny_overrides("dcgan", "mnist_embedded", "trainer.steps=2"))
    (root / "random.pt").write_bytes(bytes(range(256)) * 4)
    (root / "notes.txt").write_text("hello, not a checkpoint\n")
    (root / "a_file").write_text("x\n")
    assert os.environ.get(UNSET) is None
    return {
        "ckpt": root / "run",
        "random": root / "random.pt",
        "text": root / "notes.txt",
        "file": root / "a_file",
    }


def _main(args: list[str], capsys) -> tuple[int, str]:
    try:
        with pytest.raises(SystemExit) as e:
            cli.main(args)
    finally:
        GlobalHydra.instance().clear()
    return e.value.code, capsys.readouterr().err


def _one_error_line(code, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("ganrun: error: "), err
    return lines[0]


def _fill(text: str, files: dict[str, Path]) -> str:
    for name, path in files.items():
        text = text.replace(f"{{{name}}}", str(path))
    return text


# command line (with {ckpt}, {random}, {text}, {file} filled in) -> message fragments
CASES = [
    # tracebacks before
    (
        ["train", "seed=${oc.env:HOME}"],
        ["seed=${oc.env:HOME} resolves to", "seed takes an integer"],
    ),
    (
        ["train", f"hydra.run.dir=${{oc.env:{UNSET}}}"],
        [f"hydra.run.dir=${{oc.env:{UNSET}}}", f"environment variable {UNSET} is not set"],
    ),
    (["train", "optimizer.eps=-1"], ["optimizer.eps=-1 is not valid", ">= 0"]),
    (["train", "optimizer.lr_g=inf"], ["optimizer.lr_g=inf is not valid", "> 0"]),
    (["fit-evaluator", "lr=-1"], ["lr must be a learning rate > 0", "lr=0.003"]),
    (["sample", "ckpt={ckpt}", "n=1000000000"], ["n=1000000000", "at most n=10000", "refuses"]),
    (["train", "model.G=3"], ["model.G is missing or not a node", "_target_"]),
    (["train", "seed=${nope}"], ["seed=${nope}", "${nope} names no setting"]),
    # the wrong key blamed before
    (["sample", "ckpt={ckpt}", "seed=abc"], ["seed=abc is not valid", "seed takes an integer"]),
    (["eval", "ckpt={ckpt}", "metrics=fid"], ["metrics takes a list", "metrics=[fid]"]),
    (["sample", "ckpt={random}"], ["random.pt is not a ganrun checkpoint"]),
    (["sample", "ckpt={text}"], ["notes.txt is not a ganrun checkpoint"]),
    (["eval", "ckpt={text}", "metrics=[fid]"], ["notes.txt is not a ganrun checkpoint"]),
    (["train", "resume={random}"], ["random.pt is not a ganrun checkpoint"]),
    (["train", "resume={text}"], ["notes.txt is not a ganrun checkpoint"]),
    (["train", "abc"], ["cannot parse 'abc'", "key=value"]),
    (["train", "model.G._target_=os.system"], ["'os.system' is not an importable class"]),
    # accepted silently before
    (["eval", "ckpt={ckpt}", "metrics=[]"], ["metrics=[] scores nothing", "metrics=[fid]"]),
    (["train", "+foo=bar"], ["+foo=bar: foo is not a setting of ganrun train", "valid: trainer"]),
    (["train", "+trainer.foo=1"], ["trainer.foo is not a setting of trainer", "steps"]),
    (["train", "+model.foo=1"], ["adds model.foo, which nothing reads", "settings of model"]),
    (
        ["train", "+model.recipe.optimizer.sgd.lr_g=1"],
        ["nothing reads", "keys read under model.recipe.optimizer: adam."],
    ),
    (["train", "~seed"], ["~seed removes a setting", "set seed=<value>"]),
    (["train", "model=[dcgan,vanilla]"], ["model takes one option, not a list"]),
    (["train", "regularizer=gp,r1"], ["a comma makes a sweep", "-m", "regularizer=[gp,r1]"]),
    (["train", "model.width=0"], ["model.width must be >= 1"]),
    (["train", "trainer.num_workers=-1"], ["trainer.num_workers must be >= 0"]),
    (["sample", "ckpt={ckpt}", "truncation=-1"], ["truncation must be a threshold > 0"]),
    # failed only once the run dir existed
    (
        ["train", "trainer.batch_size=100000"],
        ["trainer.batch_size=100000 is larger than the dataset (4500 samples", "<= 4500"],
    ),
    (["fit-evaluator", "batch_size=100000"], ["larger than the dataset (4500 images)"]),
    (["sample", "ckpt={ckpt}", "out=grid.gif"], ["out=grid.gif should name a .png"]),
    # run dirs that cannot be made: a traceback from Hydra before
    (
        ["train", "hydra.run.dir=/proc/ganrun-nope"],
        ["hydra.run.dir=/proc/ganrun-nope: cannot create", "choose another with hydra.run.dir"],
    ),
    (["train", "hydra.run.dir={file}/run"], ["a_file is a file, not a folder"]),
    (["train", "hydra.run.dir={file}"], ["a_file is a file, not a folder"]),
    (["train", "-m", "hydra.sweep.dir={file}/sweep", "seed=1,2"], ["hydra.sweep.dir="]),
    (["sample", "ckpt={ckpt}", "out={file}/grid.png"], ["out=", "a_file is a file"]),
]


@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_malformed_command_line(args, needles, files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [_fill(a, files) for a in args]
    if args[0] == "train":
        args = [args[0], *QUICK, *args[1:]]
    before = _snapshot(files["ckpt"])
    line = _one_error_line(*_main(args, capsys))
    for needle in needles:
        assert _fill(needle, files) in line, line
    assert list(tmp_path.iterdir()) == []  # nothing written: no run dir, no file
    assert _snapshot(files["ckpt"]) == before


def test_the_base_command_lines_pass(files, tmp_path, monkeypatch):
    """The property test's command lines are valid without the malformed override
    (eval's last check wants evaluation weights this machine may not have)."""
    monkeypatch.chdir(tmp_path)
    register_configs()
    for command, base in _bases(files).items():
        if command != "eval":
            assert cli.preflight(command, list(base)) is not None, command
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- property
def _bases(files) -> dict[str, list[str]]:
    return {
        "train": list(QUICK),
        "sample": [f"ckpt={files['ckpt']}"],
        "eval": [f"ckpt={files['ckpt']}", "metrics=[fid]"],
        "fit-evaluator": ["epochs=1"],
        "fetch-weights": [],
    }


_word = st.from_regex(r"[a-z][a-z_]{0,7}", fullmatch=True)
_ident = _word.map(lambda w: f"zz{w}")  # never an existing key or option
_junk_word = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).map(lambda w: f"x{w}")
_non_positive = st.integers(-(10**9), 0).map(str)
_negative = st.integers(-(10**9), -1).map(str)
_fraction = st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: x != int(x)).map(repr)
_not_int = st.one_of(_junk_word, _fraction, st.just("[1,2]"), st.just("{a:1}"))
_not_number = st.one_of(_junk_word, st.just("[1,2]"), st.just("{a:1}"))
_not_bool = st.one_of(_junk_word.filter(lambda w: w not in ("xy", "xn")), st.just("[1]"))
_non_positive_float = st.one_of(
    st.floats(-1e9, 0.0).map(repr), st.just("nan"), st.just("-inf"), _not_number
)


def _bad_values(spec: str):
    return {
        "pos": st.one_of(_non_positive, _not_int),  # an integer >= 1
        "nonneg": st.one_of(_negative, _not_int),  # an integer >= 0
        "int": _not_int,  # any integer
        "posfloat": _non_positive_float,  # a number > 0
        "bool": _not_bool,
        "word": _junk_word,  # a choice (device, on_nan) that no junk word matches
    }[spec]


# key -> what it takes, per command (keys whose every value is valid are left out)
KEYS = {
    "train": {
        **dict.fromkeys(
            [f"trainer.{k}" for k in ("steps", "batch_size", "n_critic", "checkpoint_every")]
            + [f"trainer.{k}" for k in ("log_every", "image_every", "keep_checkpoints", "n_fixed")],
            "pos",
        ),
        **dict.fromkeys(
            ["trainer.num_workers", "trainer.max_rollbacks", "trainer.n_critic_warmup_steps"],
            "nonneg",
        ),
        "seed": "int",
        "optimizer.lr_g": "posfloat",
        "optimizer.lr_d": "posfloat",
        "trainer.progress": "bool",
        "trainer.deterministic": "bool",
        "logger.tensorboard": "bool",
        "trainer.device": "word",
        "trainer.on_nan": "word",
        "dataset.split": "word",
        "model.width": "pos",  # the message names model.G.width for a wrong type
        "model.z_dim": "pos",
    },
    "sample": {
        "n": "pos",
        "nrow": "pos",
        "seed": "int",
        "class_idx": "nonneg",
        "truncation": "posfloat",
        "per_image": "bool",
        "use_ema": "bool",
        "device": "word",
        "rejection.steps": "pos",
        "rejection.method": "word",
    },
    "eval": {
        "n": "pos",
        "batch_size": "pos",
        "seed": "int",
        "truncation": "posfloat",
        "use_ema": "bool",
        "history": "bool",
        "device": "word",
        "rejection.batch_size": "pos",
    },
    "fit-evaluator": {
        **dict.fromkeys(["epochs", "batch_size", "width", "feature_dim"], "pos"),
        "lr": "posfloat",
        "seed": "int",
        "device": "word",
        "dataset.split": "word",
    },
    "fetch-weights": {},
}
GROUPS = {
    "train": ["model", "loss", "optimizer", "dataset", "trainer", "logger", "eval", "augment"],
    "fit-evaluator": ["dataset"],
}
SECTIONS = {"train": ["trainer.", "logger.", "eval."], "sample": ["rejection."]}
SECTIONS["eval"] = SECTIONS["sample"]
STRING_KEY = {"train": "trainer.device", "sample": "device", "eval": "device"}
STRING_KEY.update({"fit-evaluator": "device", "fetch-weights": "out"})
INT_KEY = {"train": "seed", "sample": "seed", "eval": "seed", "fit-evaluator": "seed"}


def _malformed(command: str):
    """(override, fragments of which the error line must contain one)."""
    options = []
    keys = KEYS[command]
    if keys:
        key = st.sampled_from(sorted(keys))
        options.append(
            key.flatmap(
                lambda k: _bad_values(keys[k]).map(
                    lambda v: (
                        f"{k}={v}",
                        [k, f"model.G.{k[6:]}"] if k.startswith("model.") else [k],
                    )
                )
            )
        )
    sections = ["", *SECTIONS.get(command, [])]
    options.append(  # unknown keys, set or added
        st.tuples(st.sampled_from(["", "+"]), st.sampled_from(sections), _ident).map(
            lambda t: (f"{t[0]}{t[1]}{t[2]}=1", [t[2]])
        )
    )
    if command in GROUPS:
        options.append(
            st.tuples(st.sampled_from(GROUPS[command]), _ident).map(
                lambda t: (f"{t[0]}={t[1]}", [f"{t[0]}={t[1]} is not an option"])
            )
        )
    if command in GROUPS:  # a list where one option goes
        two = "model=[dcgan,vanilla]" if command == "train" else "dataset=[mnist_embedded,fake]"
        options.append(st.just((two, ["takes one option, not a list"])))
    if INT_KEY.get(command):  # a sweep without -m
        options.append(
            st.lists(st.integers(0, 9), min_size=2, max_size=3).map(
                lambda v: (f"seed={','.join(map(str, v))}", ["a comma makes a sweep"])
            )
        )
    broken = [f"${{oc.env:{UNSET}}}", "${zz_no_such_key}", "${zzresolver:1}"]
    options.append(  # interpolations that do not resolve, on a string setting and the run dir
        st.tuples(
            st.sampled_from([STRING_KEY[command], "hydra.run.dir"]), st.sampled_from(broken)
        ).map(lambda t: (f"{t[0]}={t[1]}", [t[0]]))
    )
    if command in INT_KEY:  # resolves, to a string where an integer goes
        options.append(st.just((f"{INT_KEY[command]}=${{oc.env:HOME}}", [INT_KEY[command]])))
    junk = st.text(
        alphabet=string.ascii_letters + string.digits + "!#%&()*,-./:;<>?@[]^_`{|}\"'$\\",
        min_size=1,
        max_size=12,
    ).filter(lambda t: not t.startswith(("-", "~", "+")))  # no '=': never an override
    options.append(junk.map(lambda t: (t, ["cannot parse"])))
    return st.one_of(options)


def _check_property(command: str, files, data) -> None:
    base = _bases(files)[command]
    bad, fragments = data.draw(_malformed(command), label="malformed")
    # anywhere on the line, but after a base override of the same key (the last one wins)
    key = bad.split("=", 1)[0].lstrip("+")
    first = max((i + 1 for i, a in enumerate(base) if a.split("=", 1)[0] == key), default=0)
    at = data.draw(st.integers(first, len(base)), label="position")
    args = [*base[:at], bad, *base[at:]]
    work = files["ckpt"].parent / f"cwd-{command}"
    work.mkdir(exist_ok=True)
    before = _snapshot(files["ckpt"])
    old = os.getcwd()
    os.chdir(work)
    try:
        from contextlib import redirect_stderr
        from io import StringIO

        err = StringIO()
        with redirect_stderr(err), pytest.raises(SystemExit) as e:
            cli.preflight(command, args)
    finally:
        os.chdir(old)
        GlobalHydra.instance().clear()
    line = _one_error_line(e.value.code, err.getvalue())
    assert any(f in line for f in fragments), (args, line)
    assert list(work.iterdir()) == [], args  # nothing written
    assert _snapshot(files["ckpt"]) == before


PROPERTY = settings(
    derandomize=True,  # the same examples on every machine: CI is reproducible
    database=None,  # and no .hypothesis/ folder of saved failures
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("command", sorted(KEYS))
@PROPERTY
@given(data=st.data())
def test_malformed_overrides_fail_in_one_line(command, files, data):
    register_configs()
    _check_property(command, files, data)

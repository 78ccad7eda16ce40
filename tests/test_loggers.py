"""The loggers (logger=tensorboard, csv, wandb, none, several at once): what each writes,
that a resume neither doubles nor reverses steps, and TensorBoard's HParams row."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ganrun import checkpoint as ckpt
from ganrun.errors import DivergenceError
from tests.conftest import cli_error, compose_config, run_train, tiny_overrides
from tests.test_divergence import nan_at

RING = ["trainer.keep_checkpoints=10", "trainer.steps=4"]


def _flags(cfg) -> dict[str, bool]:
    return {k: bool(cfg.logger[k]) for k in ("tensorboard", "csv", "wandb")}


@pytest.mark.parametrize(
    "choice, on",
    [
        (None, {"tensorboard"}),  # the default is as it was
        ("logger=tensorboard", {"tensorboard"}),
        ("logger=none", set()),
        ("logger=csv", {"csv"}),
        ("logger=[tensorboard,csv,wandb]", {"tensorboard", "csv", "wandb"}),
        ("logger.tensorboard=false", set()),
    ],
)
def test_logger_choices_compose(choice, on):
    cfg = compose_config([choice] if choice else [])
    assert _flags(cfg) == {k: k in on for k in ("tensorboard", "csv", "wandb")}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _scalar_steps(tb: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def _hparams(tb: Path):
    """(hparams, status name, {metric tag: last value}) of the run in ``tb``, read
    back from the event files as TensorBoard's HParams plugin reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata

    acc = EventAccumulator(str(tb), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    start = metadata.parse_session_start_info_plugin_data(
        acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    )
    end = metadata.parse_session_end_info_plugin_data(
        acc.SummaryMetadata(metadata.SESSION_END_INFO_TAG).plugin_data.content
    )
    hp = {}
    for k, v in start.hparams.items():
        kind = v.WhichOneof("kind")
        hp[k] = getattr(v, kind)
    last = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
    return hp, api_pb2.Status.Name(end.status), last


def test_csv_and_tensorboard_resume_without_doubled_steps(tmp_path):
    """A run killed after its step-2 checkpoint had logged steps 3 and 4: its resume
    from step 2 replaces them, in TensorBoard (purge_step) and in metrics.csv (rows
    dropped), and keeps step 2. Evaluation scores appear at step 2: new CSV columns."""
    over = tiny_overrides(
        "vanilla", "ring", *RING, "logger=[tensorboard,csv]", "optimizer.lr_g=5e-4",
        "eval=modes", "eval.every=2", "eval.n_modes=200",
    )  # fmt: skip
    run_train(tmp_path, over)
    rows = _csv_rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert rows[0]["eval/modes"] == "" and rows[1]["eval/modes"] != ""  # widened mid-run
    assert [float(r["kimg"]) for r in rows] == pytest.approx([0.016, 0.032, 0.048, 0.064])
    assert all(float(r["wall_time"]) > 1e9 and r["loss/d"] for r in rows)
    first_hparams = sorted((tmp_path / "tb").glob("*.hparams"))
    assert len(first_hparams) == 1
    hp, status, last = _hparams(tmp_path / "tb")
    assert status == "STATUS_SUCCESS" and hp["status"] == "finished"
    assert hp["optimizer.lr_g"] == pytest.approx(5e-4) and hp["model"] == "vanilla"
    assert hp["dataset"] == "ring" and "eval/best/modes" in last and "eval/modes" in last

    # the crash: the step-4 checkpoint never made it to disk
    (tmp_path / ckpt.CKPT_DIR / "step-00000004.pt").unlink()
    run_train(tmp_path, [*over, "trainer.steps=5", f"resume={tmp_path}"])
    rows = _csv_rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert _scalar_steps(tmp_path / "tb", "loss/d") == [1, 2, 3, 4, 5]
    assert _scalar_steps(tmp_path / "tb", "eval/modes") == [2, 4, 5]
    hparams_files = sorted((tmp_path / "tb").glob("*.hparams"))
    assert len(hparams_files) == 1 and hparams_files != first_hparams  # replaced, not added
    hp, status, _ = _hparams(tmp_path / "tb")
    assert status == "STATUS_SUCCESS" and hp["status"] == "finished"


def test_a_diverged_run_has_its_status_in_the_hparams_row_and_csv_after_rollback(
    tmp_path, monkeypatch
):
    # rollback: steps 3.. are re-done from the step-2 checkpoint; rows stay increasing
    nan_at(monkeypatch, 2)
    run = tmp_path / "rollback"
    over = tiny_overrides("vanilla", "ring", *RING, "logger=[tensorboard,csv]")
    run_train(run, [*over, "trainer.on_nan=rollback"])
    rows = _csv_rows(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[1]["guard/rollbacks"]) == 1 and rows[2]["guard/rollbacks"] == ""
    assert _scalar_steps(run / "tb", "loss/d") == [1, 2, 3, 4]

    nan_at(monkeypatch, 2, times=None)  # stop: the run ends diverged at step 3
    run = tmp_path / "stop"
    with pytest.raises(DivergenceError):
        run_train(run, over)
    hp, status, _ = _hparams(run / "tb")
    assert status == "STATUS_FAILURE" and hp["status"] == "diverged"
    assert [int(r["step"]) for r in _csv_rows(run / "metrics.csv")] == [1, 2]


def _wandb_records(path: Path) -> list:
    """The records of an offline run's .wandb file (W&B's LevelDB-style log: a 7-byte
    header, 32 KiB blocks of records with a 7-byte header: crc32c, length, type)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, pos, part, out, block = path.read_bytes(), 7, b"", [], 32768
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        part += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            out.append(Record.FromString(part))
            part = b""
    return out


def _config_value(value_json: str):
    import json

    v = json.loads(value_json)  # some wandb versions store {"value": ..., "desc": ...}
    return v["value"] if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v else v


def _wandb_attempt(folder: Path) -> dict:
    import json

    (path,) = folder.glob("run-*.wandb")
    found = {"steps": [], "images": [], "config": {}, "summary": {}, "exit": None, "id": None}
    for r in _wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            found["id"] = r.run.run_id
            found["config"].update(
                {u.key: _config_value(u.value_json) for u in r.run.config.update}
            )
        elif kind == "config":
            found["config"].update({u.key: _config_value(u.value_json) for u in r.config.update})
        elif kind == "history":
            keys = {i.key or "/".join(i.nested_key) for i in r.history.item}
            if "loss/d" in keys:
                found["steps"].append(r.history.step.num)
            if "samples/fixed_z/_type" in keys:  # an image: its file's fields
                found["images"].append(r.history.step.num)
        elif kind == "summary":
            found["summary"].update(
                {
                    u.key or "/".join(u.nested_key): json.loads(u.value_json)
                    for u in r.summary.update
                }
            )
        elif kind == "exit":
            found["exit"] = r.exit.exit_code
    return found


def test_wandb_offline_logs_and_a_resume_continues_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    over = tiny_overrides(
        "vanilla", "ring", *RING, "logger=[csv,wandb]", "logger.wandb_mode=offline",
        "trainer.steps=2", "optimizer.lr_g=5e-4",
    )  # fmt: skip
    run_train(tmp_path, over)
    run_train(tmp_path, [*over, "trainer.steps=4", f"resume={tmp_path}"])
    attempts = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2
    first, second = (_wandb_attempt(a) for a in attempts)
    assert (
        first["id"] == second["id"]
        and first["id"] in (tmp_path / "wandb" / "ganrun-run.json").read_text()
    )
    assert first["steps"] == [1, 2] and second["steps"] == [3, 4]
    assert first["images"] == [2] and second["images"] == [4]
    assert len(list(attempts[1].glob("files/media/images/samples/fixed_z_4_*.png"))) == 1
    # the resolved config: the recipe's numbers, not ${...} placeholders
    assert first["config"]["trainer"]["steps"] == 2
    assert second["config"]["trainer"]["steps"] == 4
    assert second["config"]["optimizer"]["lr_g"] == pytest.approx(5e-4)
    assert second["config"]["ganrun_hparams"]["optimizer.lr_g"] == pytest.approx(5e-4)
    assert second["summary"]["status"] == "finished" and second["exit"] == 0
    assert [int(r["step"]) for r in _csv_rows(tmp_path / "metrics.csv")] == [1, 2, 3, 4]


def test_wandb_not_installed_is_one_line_naming_the_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails, find_spec is None
    args = ["train", *tiny_overrides("vanilla", "ring", "logger=[tensorboard,wandb]")]
    err = cli_error([*args, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    assert "pip install 'ganrun[wandb]'" in err and "logger=wandb" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    err = cli_error(["train", "logger=wandb", "logger.wandb_mode=offlin"], capsys)
    assert "pip install" in err  # the missing package is named first


def test_wandb_mode_is_checked_before_the_run(capsys, tmp_path):
    pytest.importorskip("wandb")
    err = cli_error(["train", "logger=wandb", "logger.wandb_mode=offlin"], capsys)
    assert "logger.wandb_mode=offlin" in err and "offline" in err


def test_none_writes_no_logger_files(tmp_path):
    run_train(tmp_path, tiny_overrides("vanilla", "ring", "trainer.steps=2", "logger=none"))
    assert not (tmp_path / "tb").exists() and not (tmp_path / "metrics.csv").exists()
    assert not (tmp_path / "wandb").exists()
    assert OmegaConf.select(compose_config(["logger=none"]), "logger.subdir") == "tb"

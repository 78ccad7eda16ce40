"""The loggers a run writes to (``logger=...``): TensorBoard, a CSV table, Weights & Biases.

``make_writer`` returns one writer (the interface of ``ganrun.training.tb.NullWriter``)
that fans out to every backend the ``logger`` node switches on, so the loop calls
``scalars`` / ``image`` / ``text`` / ``rewind`` / ``close`` once whatever is chosen;
the train command calls ``end_run`` when the run's status is known. ``check`` runs in
``build.validate``, before anything starts.

Resume never doubles a step: the loop opens the writer with ``purge_step`` = the
checkpoint's step + 1, and a divergence rollback calls ``rewind(step + 1)``; each
backend voids what an earlier attempt logged from there on in its own way (TensorBoard's
purge_step; the CSV table drops those rows; W&B, which cannot delete history, keeps the
steps it has and logs only later ones).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import secrets
import string
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ganrun import fsio
from ganrun.errors import ConfigError
from ganrun.training.tb import NullWriter, TensorBoardWriter

log = logging.getLogger(__name__)

WANDB_EXTRA = "pip install 'ganrun[wandb]'"
WANDB_MODES = ("online", "offline", "disabled", "shared")
_ID_CHARS = string.ascii_lowercase + string.digits  # as wandb's own ids
WANDB_STATE = "ganrun-run.json"  # in <run dir>/wandb: the wandb run id and its last step
# overrides that say how a run reports or where it runs, not what it trains: not hparams
NOT_HPARAMS = (
    "resume", "hydra", "logger", "trainer.progress", "trainer.device", "trainer.num_workers",
    "trainer.threads", "trainer.log_every", "trainer.image_every", "trainer.checkpoint_every",
    "trainer.keep_checkpoints", "trainer.auto_resume",
)  # fmt: skip
# how a run ended (status.json's words) -> the exit status W&B records
EXIT_STATUS = {"finished": 0, "failed": 1, "diverged": 3, "stopped": 75}


def check(cfg: DictConfig) -> None:
    """ConfigError (one line) for a logger that cannot work, before the run starts."""
    lg = cfg.logger
    if lg.get("wandb"):
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError(f"logger=wandb needs the wandb package, not installed: {WANDB_EXTRA}")
        mode = lg.get("wandb_mode")
        if mode is not None and mode not in WANDB_MODES:
            raise ConfigError(
                f"logger.wandb_mode={mode} is not a wandb mode; choose from "
                f"{', '.join(WANDB_MODES)} (or null: $WANDB_MODE, else online)"
            )
    if lg.get("csv") and not str(lg.get("csv_file") or "").strip():
        raise ConfigError("logger.csv_file must name a file (e.g. metrics.csv)")


def make_writer(cfg: DictConfig, run_dir: Path, purge_step: int | None = None) -> NullWriter:
    """One writer for every backend ``cfg.logger`` switches on (a NullWriter for none).
    ``purge_step``: the first step this run will log; anything an earlier attempt
    logged at or after it is void (resume after a crash past the checkpoint)."""
    lg, run_dir = cfg.logger, Path(run_dir)
    writers: list[NullWriter] = []
    if lg.get("tensorboard"):
        writers.append(TensorBoardWriter(run_dir / lg.subdir, purge_step=purge_step))
    if lg.get("csv"):
        writers.append(CsvWriter(run_dir / lg.csv_file, cfg.trainer, purge_step))
    if lg.get("wandb"):
        writers.append(WandbWriter(cfg, run_dir))
    if not writers:
        return NullWriter()
    return writers[0] if len(writers) == 1 else MultiWriter(writers)


class MultiWriter(NullWriter):
    """Hands every call to each of several writers."""

    def __init__(self, writers: Sequence[NullWriter]):
        self.writers = list(writers)

    def scalars(self, values, step):
        for w in self.writers:
            w.scalars(values, step)

    def image(self, tag, img, step):
        for w in self.writers:
            w.image(tag, img, step)

    def text(self, tag, text, step):
        for w in self.writers:
            w.text(tag, text, step)

    def rewind(self, step):
        for w in self.writers:
            w.rewind(step)

    def flush(self):
        for w in self.writers:
            w.flush()

    def close(self):
        for w in self.writers:
            w.close()

    def finish(self, status, hparams, scalars, step):
        for w in self.writers:
            w.finish(status, hparams, scalars, step)


# --------------------------------------------------------------------------- the end of a run
def run_hparams(run_dir: Path, overrides: Sequence[str] = (), choices: dict | None = None) -> dict:
    """What tells a run from its neighbours in a sweep: the overrides it was started
    with (``.hydra/overrides.yaml``, which a resume leaves as it was, else ``overrides``),
    typed as Hydra parses them (``optimizer.lr_g=2e-4`` is the number 0.0002), plus the
    model and dataset chosen. Overrides of where and how the run reports (``logger``,
    ``trainer.device``, ``trainer.log_every``, ..., ``NOT_HPARAMS``) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    stored = Path(run_dir) / ".hydra" / "overrides.yaml"
    if stored.is_file():
        try:
            overrides = [str(o) for o in (OmegaConf.load(stored) or [])]
        except Exception:  # a damaged file: the ones given
            pass
    out: dict[str, Any] = {}
    parser = OverridesParser.create()
    for text in overrides:
        try:
            (ov,) = parser.parse_overrides([str(text)])
        except Exception:
            continue
        key = ov.key_or_group
        if ov.is_delete() or any(key == k or key.startswith(k + ".") for k in NOT_HPARAMS):
            continue
        if key.startswith("hydra/"):  # hydra/launcher=..., hydra/sweeper=...
            continue
        value = ov.value()
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    for group in ("model", "dataset"):
        if group not in out and (choices or {}).get(group):
            out[group] = str(choices[group])
    return out


def end_run(trainer, status: str, overrides: Sequence[str] = (), scalars: dict | None = None):
    """Tell the run's loggers how it ended (the train command calls this once the status
    is known): TensorBoard's HParams row, W&B's summary and exit status. A logger that
    fails here costs a warning, never the run's result."""
    if trainer is None:
        return
    try:
        finite = {k: float(v) for k, v in (scalars or {}).items() if v is not None}
        hparams = run_hparams(trainer.run_dir, overrides, trainer.choices)
        trainer.writer.finish(status, hparams, finite, int(trainer.step))
    except Exception as e:  # noqa: BLE001 - the run itself is over and recorded
        log.warning("loggers: could not record the end of the run: %s", _one_line(e))


# --------------------------------------------------------------------------- CSV
class CsvWriter(NullWriter):
    """``<run dir>/metrics.csv``: a row per step with step, kimg, wall_time (Unix
    seconds) and a column per scalar, steps strictly increasing. Scalars logged at the
    same step (losses, then the evaluation's scores) share a row; a key that appears
    mid-run (the first evaluation, a rollback's guard/*) widens the header, which
    rewrites the file (atomically) with empty cells in the earlier rows. Each row is
    on disk (flushed) when its call returns, so a killed run loses none; the resumed
    run drops the rows at and after its ``purge_step`` before it appends."""

    FIXED = ("step", "kimg", "wall_time")

    def __init__(self, path: Path, trainer_cfg, purge_step: int | None = None):
        self.path = Path(path)
        keys = ("n_critic", "n_critic_warmup", "n_critic_warmup_steps", "n_critic_warmup_every")
        self.schedule = types.SimpleNamespace(
            **{k: None if trainer_cfg[k] is None else int(trainer_cfg[k]) for k in keys}
        )
        self.batch_size = int(trainer_cfg.batch_size)
        self.columns: list[str] = list(self.FIXED)
        self.rows: list[dict[str, Any]] = []
        self._file = None
        self._last_row_at = 0  # byte offset where the last row starts
        self._read(purge_step)
        self._rewrite()

    def _kimg(self, step: int) -> float:
        from ganrun.training.loop import batches_before  # the loop imports this module

        return batches_before(self.schedule, step) * self.batch_size / 1000.0

    def _read(self, purge_step: int | None) -> None:
        """The rows of an earlier attempt before ``purge_step`` (a torn last line,
        from a kill in the middle of a write, is dropped)."""
        if not self.path.is_file():
            return
        text = self.path.read_text(encoding="utf-8", errors="replace")
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or reader.fieldnames[0] != "step":
            raise ConfigError(
                f"{self.path} is not a ganrun metrics table (its first column is not step): "
                "move it away or set logger.csv_file=<another name>"
            )
        self.columns = list(dict.fromkeys([*self.FIXED, *reader.fieldnames]))
        for row in reader:
            try:
                step = int(row["step"])
            except (TypeError, ValueError):
                continue
            if purge_step is not None and step >= purge_step:
                break  # rows are in step order: everything from here on is void
            self.rows.append({k: v for k, v in row.items() if v not in (None, "")})

    def _line(self, row: dict[str, Any]) -> bytes:
        def cell(v):
            return repr(v) if isinstance(v, float) else str(v)

        return (",".join(cell(row[c]) if c in row else "" for c in self.columns) + "\n").encode()

    def _rewrite(self) -> None:
        if self._file is not None:
            self._file.close()
        body = [(",".join(self.columns) + "\n").encode(), *(self._line(r) for r in self.rows)]
        fsio.atomic_write_bytes(self.path, b"".join(body), fsio.RUN_DIR_ELSEWHERE)
        self._file = open(self.path, "ab")  # noqa: SIM115 - appended to until close()
        self._last_row_at = sum(map(len, body[:-1])) if self.rows else self._file.tell()

    def scalars(self, values, step):
        step = int(step)
        values = {k: float(v) for k, v in values.items()}
        new = [k for k in values if k not in self.columns]
        self.columns.extend(new)
        last = int(self.rows[-1]["step"]) if self.rows else None
        if last is not None and step < last:  # not done by the loop; kept in order anyway
            at = next(i for i, r in enumerate(self.rows) if int(r["step"]) >= step)
            if int(self.rows[at]["step"]) == step:
                self.rows[at].update(values)
            else:
                self.rows.insert(at, self._row(step, values))
            self._rewrite()
            return
        if last == step:
            self.rows[-1].update(values)
        else:
            self.rows.append(self._row(step, values))
        if new:
            self._rewrite()
            return
        if last == step:  # the same row, now with more cells: rewrite it in place
            self._file.seek(self._last_row_at)
            self._file.truncate()
        self._last_row_at = self._file.tell()
        self._file.write(self._line(self.rows[-1]))
        self._file.flush()

    def _row(self, step: int, values: dict[str, float]) -> dict[str, Any]:
        return {
            "step": step,
            "kimg": self._kimg(step),
            "wall_time": round(time.time(), 3),
            **values,
        }

    def rewind(self, step):
        keep = [r for r in self.rows if int(r["step"]) < step]
        if len(keep) != len(self.rows):
            self.rows = keep
            self._rewrite()

    def flush(self):
        if self._file is not None:
            self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


# --------------------------------------------------------------------------- Weights & Biases
class WandbWriter(NullWriter):
    """A W&B run with its files in ``<run dir>/wandb``, the resolved config as its config.

    Its id is kept in ``<run dir>/wandb/ganrun-run.json`` with the last step it was sent,
    so a resumed run (resume=, auto-resume, a requeued job) continues the same W&B run.
    W&B steps only go up and W&B cannot delete what it has: steps up to the stored one
    (logged by an attempt that crashed after its checkpoint, or before a divergence
    rollback) are not sent again. Text is not logged (the config is the run's config)."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                f"logger=wandb needs the wandb package, not installed: {WANDB_EXTRA}"
            ) from None
        self.wandb = wandb
        lg = cfg.logger
        self.state_path = Path(run_dir) / "wandb" / WANDB_STATE
        state = self._read_state()
        run_id = state.get("id") or "".join(secrets.choice(_ID_CHARS) for _ in range(8))
        name = lg.get("wandb_name") or "/".join(Path(run_dir).resolve().parts[-2:])
        fsio.make_dirs(self.state_path.parent, fsio.RUN_DIR_ELSEWHERE)
        try:
            self.run = wandb.init(
                project=lg.wandb_project,
                entity=lg.get("wandb_entity"),
                dir=str(run_dir),
                id=run_id,
                resume="allow",
                name=name,
                group=lg.get("wandb_group"),
                tags=list(lg.get("wandb_tags") or []) or None,
                mode=lg.get("wandb_mode"),
                config=OmegaConf.to_container(cfg, resolve=True),
                allow_val_change=True,  # a resume may change trainer.steps, eval.*
                reinit="finish_previous",  # an earlier in-process run left open
                settings=wandb.Settings(console="off"),  # the terminal stays ganrun's
            )
        except Exception as e:  # noqa: BLE001 - wandb raises its own kinds (UsageError, ...)
            raise ConfigError(
                f"logger=wandb: wandb.init failed: {_one_line(e)} (log in with `wandb login`, "
                "or log without an account or network: logger.wandb_mode=offline)"
            ) from None
        # steps W&B already has: the stored last step, and online the server's own count
        self.floor = max(int(state.get("step", -1)), int(getattr(self.run, "step", 0) or 0) - 1)
        self.high = self.floor
        self._warned = False
        self._write_state()

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self) -> None:
        fsio.atomic_write_text(
            self.state_path,
            json.dumps({"id": self.run.id, "step": self.high}) + "\n",
            fsio.RUN_DIR_ELSEWHERE,
        )

    def _send(self, data: dict[str, Any], step: int) -> None:
        step = int(step)
        if step <= self.floor:
            return
        self.run.log(data, step=step)
        if step > self.high:
            self.high = step
            self._write_state()

    def scalars(self, values, step):
        self._send({k: float(v) for k, v in values.items()}, step)

    def image(self, tag, img, step):
        if int(step) <= self.floor:
            return
        import torch

        x = img.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
        array = (x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)).numpy()
        self._send({tag: self.wandb.Image(array)}, step)

    def rewind(self, step):
        if step <= self.high and not self._warned:
            log.warning(
                "wandb cannot delete history: it keeps steps %d-%d as first logged and "
                "shows this run from step %d on (TensorBoard and metrics.csv hold the re-done steps)",
                step,
                self.high,
                self.high + 1,
            )
            self._warned = True
        self.floor = max(self.floor, self.high)

    def finish(self, status, hparams, scalars, step):
        self.run.summary.update({"status": status, **scalars})
        self.run.config.update({"ganrun_hparams": hparams}, allow_val_change=True)
        self.run.finish(exit_code=EXIT_STATUS.get(status, 1))


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__

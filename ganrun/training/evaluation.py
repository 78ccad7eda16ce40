"""The ``Evaluator`` training hook: periodic metrics, ``metrics.jsonl`` and ``best.pt``.

Every ``eval.every`` generator steps (and at the last step) it samples G_ema
when the run keeps one (else G), computes ``eval.metrics``, logs them to
TensorBoard under ``eval/<features>/<score>``, appends one JSON object per
evaluation to ``<run>/metrics.jsonl`` (step, kimg, scores, protocol), and when
the ``eval.best`` score improves writes ``<run>/checkpoints/best.pt`` (same
format as the step checkpoints, written atomically, never pruned). Its
best-so-far goes into every checkpoint, so a resumed run keeps it.

It lives in ``training/`` beside ``hooks.Hook`` because it is training code (it
reads the Trainer, writes the run dir's files, takes part in checkpoint and
resume); it calls into ``ganrun.metrics`` for the numbers, and ``ganrun.metrics``
knows nothing of the loop. With it: the train preflight of ``cfg.eval``
(``check_train_eval``) and the sweep value read back from a run's
``metrics.jsonl`` (``sweep_score``, ``sweep_value``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from ganrun import checkpoint as ckpt
from ganrun.errors import ConfigError
from ganrun.metrics.evaluate import (
    Evaluation,
    Settings,
    base_name,
    best_score_name,
    check_features,
    check_modes,
    check_reference,
    higher_is_better,
    protocol_digest,
)
from ganrun.training.hooks import Hook

if TYPE_CHECKING:
    from ganrun.build import Built
    from ganrun.training.loop import Trainer

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.pt"


def tb_tag(score: str) -> str:
    """``fid[mnist-classifier]`` -> ``eval/mnist-classifier/fid`` (TensorBoard-safe)."""
    name, _, feats = score.partition("[")
    return f"eval/{feats.rstrip(']')}/{name}" if feats else f"eval/{name}"


class Evaluator(Hook):
    name = "evaluator"

    def __init__(
        self,
        evaluation: Evaluation,
        run_dir: Path,
        every: int,
        best_score: str | None,
    ):
        self.evaluation = evaluation
        self.run_dir = Path(run_dir)
        self.every = int(every)
        self.best_score = best_score  # full name, e.g. fid[inception-v3-compat]
        self.best: dict[str, Any] | None = None  # {"score", "value", "step", "protocol"}
        self.last_step = 0

    # ------------------------------------------------------------------ hook
    def after_step(self, trainer: Trainer) -> dict[str, float] | None:
        step, total = trainer.step, int(trainer.t.steps)
        self.last_step = step
        if step % self.every != 0 and step != total:
            return None
        return self.evaluate(trainer)

    def at_end(self, trainer: Trainer) -> dict[str, float] | None:
        if self.best is None:
            return None
        return {"eval/best/" + tb_tag(self.best["score"])[5:]: float(self.best["value"])}

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        b = trainer.b
        G = trainer.eval_generator()
        start = time.perf_counter()
        scores, protocol = self.evaluation.run(G)
        seconds = time.perf_counter() - start
        record = {
            "step": trainer.step,
            "kimg": trainer.kimg,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "generator": "G_ema" if b.G_ema is not None else "G",
            "scores": scores,
            "protocol": protocol,
            "seconds": round(seconds, 3),
            # the run's seconds so far before this evaluation (earlier evaluations included)
            "elapsed": round(trainer.elapsed, 3),
        }
        if self.evaluation.skipped:
            record["skipped"] = dict(self.evaluation.skipped)
        append_jsonl(self.run_dir / METRICS_FILE, record)
        log.info(
            "eval at step %d (%.0f s): %s",
            trainer.step,
            seconds,
            ", ".join(f"{k}={v:.4g}" for k, v in scores.items()),
        )
        if self._improves(scores, protocol):
            self.best = {
                "score": self.best_score,
                "value": float(scores[self.best_score]),
                "step": trainer.step,
                "protocol": protocol_digest(protocol),
            }
            self._write_best(trainer)
        return {tb_tag(k): v for k, v in scores.items()}

    def _improves(self, scores: dict[str, float], protocol: dict) -> bool:
        if self.best_score is None or self.best_score not in scores:
            return False
        value = scores[self.best_score]
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.best.get("protocol") != protocol_digest(protocol):
            log.warning(
                "the evaluation protocol changed since the best-so-far %s=%.4g (step %d): "
                "best.pt now follows the new protocol",
                self.best["score"],
                self.best["value"],
                self.best["step"],
            )
            return True
        up = higher_is_better(self.best_score)
        return value > self.best["value"] if up else value < self.best["value"]

    def _write_best(self, trainer: Trainer) -> None:
        path = ckpt.write(self.run_dir / ckpt.CKPT_DIR / BEST_FILE, trainer.step, trainer.state())
        log.info(
            "best %s=%.4g at step %d: %s",
            self.best["score"],
            self.best["value"],
            trainer.step,
            path,
        )

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best) if self.best else None, "step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best = state.get("best")
        if best and best.get("score") == self.best_score:
            self.best = dict(best)
        elif best:
            log.warning(
                "best-so-far %s=%.4g (step %d) is not the score this run tracks (%s): starting afresh",
                best.get("score"),
                best.get("value", float("nan")),
                best.get("step", -1),
                self.best_score,
            )
        step = int(state.get("step", 0))
        self.last_step = step
        # evaluations logged after the checkpoint we resume from belong to a
        # timeline that no longer exists
        drop_after(self.run_dir / METRICS_FILE, step)


# --------------------------------------------------------------------------- files
def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a crash
            log.warning("skipped an unreadable line in %s", path)
    return out


def drop_after(path: Path, step: int) -> None:
    records = read_jsonl(path)
    keep = [r for r in records if int(r.get("step", 0)) <= step]
    if len(keep) == len(records):
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
    os.replace(tmp, path)
    log.info("dropped %d evaluation(s) after step %d from %s", len(records) - len(keep), step, path)


# --------------------------------------------------------------------------- building
def eval_settings(cfg: DictConfig) -> Settings | None:
    node = cfg.get("eval")
    if node is None or not node.get("metrics"):
        return None
    return Settings.from_config(node)


def check_train_eval(cfg: DictConfig) -> None:
    """Checks of cfg.eval for preflight: no real data read. The one network access is
    the Inception weights' download when they are required and not on disk yet."""
    sweep_score(cfg)  # sweep.direction / reduce contradictions
    settings = eval_settings(cfg)
    if settings is None:
        return
    from ganrun.build import build_dataset

    data = build_dataset(cfg)
    kind = data.kind
    settings.check(kind)
    check_reference(cfg.dataset, settings)
    required = bool(cfg.eval.get("required", True))
    check_modes(settings, data, need_files=required)
    if cfg.eval.every < 1:
        raise ConfigError(f"eval.every must be >= 1, got {cfg.eval.every}")
    if cfg.eval.best is not None:
        best_score_name(str(cfg.eval.best), settings, kind)
    if required:  # else a missing extractor is skipped with a warning at the start
        check_features(settings, fetch=True)  # last: it may download


def make_evaluator(
    cfg: DictConfig, built: Built, run_dir: Path, choices: dict[str, str] | None
) -> Evaluator | None:
    """The hook for cfg.eval, or None when no metrics are asked for."""
    settings = eval_settings(cfg)
    if settings is None:
        return None
    check_train_eval(cfg)
    evaluation = Evaluation(
        settings,
        cfg,
        dataset_name=(choices or {}).get("dataset"),
        device=built.device,
        required=bool(cfg.eval.required),
        data=built.data,
    )
    if not evaluation.active:  # each metric was skipped, with a warning
        return None
    best = cfg.eval.best
    best_score = None
    if best is not None and base_name(str(best)) in _active_scores(evaluation):
        best_score = best_score_name(str(best), settings, built.data.kind)
    elif best is not None and not evaluation.skipped:  # a skipped metric was warned about
        log.warning("eval.best=%s is not measured in this run: best.pt will not be written", best)
    return Evaluator(evaluation, run_dir, int(cfg.eval.every), best_score)


def _active_scores(evaluation: Evaluation) -> set[str]:
    from ganrun.metrics.evaluate import SCORES_OF

    return {s for m in evaluation.active for s in SCORES_OF[m]}


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The evaluations in ``<run>/metrics.jsonl``, oldest first (unreadable lines skipped:
    a run killed mid-append leaves at most its last line torn)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("scores"), dict):
            out.append(record)
    return out


def sweep_score(cfg: DictConfig) -> tuple[str | None, bool]:
    """(score name as given, higher is better) for ``sweep.metric`` (default: the
    ``eval.best`` score). ConfigError when sweep.direction contradicts the score's own
    direction (maximizing FID is never meant)."""
    from ganrun.metrics.evaluate import higher_is_better

    sweep = cfg.get("sweep") or {}
    name = sweep.get("metric") or (cfg.eval.best if cfg.eval.metrics else None)
    if name is None:
        return None, False
    higher = higher_is_better(str(name))
    direction = sweep.get("direction")
    if direction is not None:
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"sweep.direction={direction} must be minimize or maximize")
        if (direction == "maximize") != higher:
            own = "maximize" if higher else "minimize"
            raise ConfigError(
                f"sweep.direction={direction} contradicts {name}: {base_name(str(name))} is "
                f"better {'higher' if higher else 'lower'}; use sweep.direction={own}"
            )
    if sweep.get("reduce", "best") not in ("best", "final"):
        raise ConfigError(f"sweep.reduce={sweep.get('reduce')} must be best or final")
    return str(name), higher


def sweep_value(cfg: DictConfig, run_dir: Path) -> tuple[float | None, str]:
    """The one number a finished run returns to a sweeper: ``sweep.metric`` (default
    the eval.best score) over the run's evaluations in metrics.jsonl, its best or final
    value (``sweep.reduce``); None with the reason when the run has no such finite score,
    so that no 0 or inf is passed off as a result."""
    name, higher = sweep_score(cfg)
    if name is None:
        return None, "no sweep.metric and no evaluation (set eval=... or sweep.metric=...)"
    values = []
    for record in read_metrics(run_dir):
        scores = record["scores"]
        full = name if name in scores else None
        if full is None:  # the short name: fid -> fid[mnist-classifier]
            matches = [k for k in scores if base_name(k) == name]
            full = matches[0] if len(matches) == 1 else None
        if full is not None:
            values.append(float(scores[full]))
    if not values:
        return None, f"no {name} in {Path(run_dir) / METRICS_FILE}"
    value = values[-1] if (cfg.get("sweep") or {}).get("reduce", "best") == "final" else None
    if value is None:
        finite = [v for v in values if math.isfinite(v)]
        value = (max if higher else min)(finite) if finite else values[-1]
    if not math.isfinite(value):
        return None, f"{name} is {value} (not finite)"
    return value, name

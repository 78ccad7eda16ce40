"""ganrun eval ckpt=<run dir or checkpoint> metrics=[fid,is,kid,prc] n=10000 [features=...]

Rebuilds G from each checkpoint (G_ema when there is one), computes the metrics
(``ganrun.metrics.evaluate``), prints a table and appends one JSON record per
checkpoint to ``<run dir>/eval/<checkpoint name>.json`` (or writes all records
to ``out=<file>.json``). ``ckpt=[a,b,...]`` compares several checkpoints;
``history=true`` adds the run's training-time evaluations (``metrics.jsonl``).
Scores measured under different protocols never share a table: each protocol
gets its own, and a note says what differs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from ganrun import checkpoint as ckpt
from ganrun import fsio
from ganrun.commands import report_errors
from ganrun.config import register_configs
from ganrun.errors import ConfigError
from ganrun.metrics.evaluate import (
    Evaluation,
    Settings,
    check_features,
    check_modes,
    check_reference,
    protocol_digest,
)
from ganrun.paths import conf_dir
from ganrun.rejection import RejectionSettings
from ganrun.training.guard import refuse_nonfinite

log = logging.getLogger(__name__)

OUT_ELSEWHERE = "choose another out=<file>.json"


def targets(cfg: DictConfig) -> list[str]:
    value = cfg.ckpt
    items = list(value) if isinstance(value, (ListConfig, list, tuple)) else [value]
    if not items or any(not isinstance(t, str) or not t for t in items):
        raise ConfigError("ckpt must be a run dir or checkpoint file, or a list of them")
    return [str(t) for t in items]


def check(cfg: DictConfig) -> None:
    """Preflight: settings and checkpoints, without computing anything."""
    if not list(cfg.metrics):  # training's eval.metrics=[] means "off"; here it is a no-op
        from ganrun.metrics.evaluate import METRICS

        raise ConfigError(
            f"metrics=[] scores nothing; name one or more of {', '.join(METRICS)}, e.g. metrics=[fid]"
        )
    from ganrun.build import resolve_device

    resolve_device(cfg.device)
    settings = Settings.from_config(cfg)
    settings.check()
    if cfg.truncation is not None and not cfg.truncation > 0:
        raise ConfigError(f"truncation must be a threshold > 0, got {cfg.truncation}")
    if cfg.out is not None and not str(cfg.out).endswith(".json"):
        raise ConfigError(f"out={cfg.out} should name a .json file")
    rejection = RejectionSettings.from_config(cfg.rejection)
    rejection.check()
    from ganrun.commands.sample import generator_key

    for t in targets(cfg):
        path, state = ckpt.load(t)
        refuse_nonfinite(path, state, [generator_key(state, cfg.use_ema)])
        settings.check((state.get("data") or {}).get("kind"))
        train_cfg = OmegaConf.create(state["config"])
        if rejection.enabled:
            from ganrun.rejection import check_unconditional

            check_unconditional(train_cfg, state, t)
        check_reference(train_cfg.dataset, settings)
        if "modes" in settings.metrics:
            from ganrun.build import build_dataset

            check_modes(settings, build_dataset(train_cfg))
    check_features(settings)


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    from ganrun.build import resolve_device
    from ganrun.commands.sample import generator_key, load_generator_with_path

    settings = Settings.from_config(cfg)
    settings.check()
    rejection = RejectionSettings.from_config(cfg.rejection)
    rejection.check()
    if cfg.out:  # before any work: a read-only place, or a file where a folder should be
        fsio.check_writable(cfg.out, OUT_ELSEWHERE)
    device = resolve_device(cfg.device)
    records: list[dict[str, Any]] = []
    rows: list[tuple[str, dict[str, Any]]] = []
    prepared: dict[str, Evaluation] = {}
    histories: set[Path] = set()
    for target in targets(cfg):
        path, G, train_cfg, state = load_generator_with_path(target, device, use_ema=cfg.use_ema)
        key = json.dumps(OmegaConf.to_container(train_cfg.dataset, resolve=True), sort_keys=True)
        if key not in prepared:  # same reference data: build the extractor once
            prepared[key] = Evaluation(
                settings,
                train_cfg,
                dataset_name=(state.get("choices") or {}).get("dataset"),
                device=device,
            )
        generator = generator_key(state, cfg.use_ema)
        start = time.perf_counter()
        sampler = None
        if rejection.enabled:
            from ganrun import rejection as drs

            sampler = drs.prepare(
                rejection,
                G,
                train_cfg,
                state,
                prepared[key].data,
                device,
                checkpoint=path,
                generator=generator,
            )
        scores, protocol = prepared[key].run(G, truncation=cfg.truncation, sampler=sampler)
        record = {
            "checkpoint": str(path),
            "step": int(state["step"]),
            "generator": generator,
            "truncation": cfg.truncation,
            "seed": settings.seed,
            "scores": scores,
            "protocol": protocol,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(time.perf_counter() - start, 3),
        }
        if sampler is not None:  # how the estimator fitted, and how many candidates it took
            record["rejection"] = {"fit": sampler.fit, **sampler.last}
        records.append(record)
        history = ckpt.run_dir_of(path) / "metrics.jsonl"
        if cfg.history and history not in histories:
            from ganrun.training.evaluation import read_jsonl

            histories.add(history)
            rows += [(f"{_short(history)} step {r.get('step')}", r) for r in read_jsonl(history)]
        rows.append((_short(path), record))
    for path in _write(records, cfg.out):
        print(f"wrote {path}")
    print(format_tables(rows))
    return records


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _write(records: list[dict[str, Any]], out: str | None) -> list[Path]:
    if out:
        return [_atomic_json(Path(out), records, OUT_ELSEWHERE)]
    written = []
    for r in records:
        path = Path(r["checkpoint"])
        dest = ckpt.run_dir_of(path) / "eval" / f"{path.stem}.json"
        try:
            old = json.loads(dest.read_text()) if dest.is_file() else []
        except (OSError, ValueError):
            old = []
        old = old if isinstance(old, list) else []
        written.append(
            _atomic_json(dest, [*old, r], "write the scores elsewhere with out=<file>.json")
        )
    return written


def _atomic_json(path: Path, obj: Any, elsewhere: str) -> Path:
    """``obj`` as JSON at ``path``, atomically; a failed write is one line (fsio)."""
    return fsio.atomic_write_text(path, json.dumps(obj, indent=1) + "\n", elsewhere)


# --------------------------------------------------------------------------- tables
def describe_protocol(protocol: dict[str, Any]) -> str:
    parts = []
    fid = protocol.get("fidelity")
    if fid:
        ref = fid.get("reference")
        real = (
            f" vs {fid['n_real']} real ({ref['name']} {ref['split']}, "
            f"{ref['resolution']}px {ref['channels']}ch)"
            if ref
            else ""
        )
        parts.append(
            f"{fid['n_generated']} generated{real}; features {fid['features']} "
            f"(weights {str(fid['weights_sha256'])[:12]}); resize: {fid['resize']}; "
            f"torch-fidelity {fid['torch_fidelity']}"
        )
    modes = protocol.get("modes")
    if modes:
        clf = f"; classifier {modes['classifier']}" if modes.get("classifier") else ""
        parts.append(f"modes: {modes['n_generated']} samples of {modes['reference']}{clf}")
    sampler = protocol.get("sampler")
    if sampler:
        est = sampler.get("estimator") or {}
        parts.append(
            f"samples through {sampler.get('method')} rejection (percentile "
            f"{sampler.get('percentile')}; estimator {est.get('init')}, {est.get('steps')} steps)"
        )
    return " | ".join(parts) or "(no protocol recorded)"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def format_tables(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """One table per protocol; a note when there is more than one."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for label, rec in rows:
        groups.setdefault(protocol_digest(rec.get("protocol") or {}), []).append((label, rec))
    lines = []
    if len(groups) > 1:
        flats = [_flatten(g[0][1].get("protocol") or {}) for g in groups.values()]
        keys = sorted({k for f in flats for k in f})
        differ = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
        lines.append(
            f"note: these scores were measured under {len(groups)} different protocols and are "
            f"shown in separate tables; compare scores only within a table "
            f"(they differ in: {', '.join(differ)})"
        )
        lines.append("")
    for i, members in enumerate(groups.values(), 1):
        title = f"protocol {i}: " if len(groups) > 1 else "protocol: "
        lines.append(title + describe_protocol(members[0][1].get("protocol") or {}))
        cols: list[str] = []
        for _, rec in members:
            cols += [c for c in rec.get("scores", {}) if c not in cols]
        header = ["checkpoint", "step", "G", *cols]
        body = [
            [
                label,
                str(rec.get("step", "")),
                _generator_label(rec),
                *[_fmt(rec.get("scores", {}).get(c)) for c in cols],
            ]
            for label, rec in members
        ]
        widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
        for r in [header, *body]:
            lines.append(
                "  ".join(
                    c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))
                )
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def _generator_label(rec: dict[str, Any]) -> str:
    g = str(rec.get("generator", "?"))
    method = ((rec.get("protocol") or {}).get("sampler") or {}).get("method")
    g = f"{g} +{method}" if method else g
    return f"{g} trunc {rec['truncation']:g}" if rec.get("truncation") else g


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.6g}"


@hydra.main(config_path=str(conf_dir()), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig):
    report_errors(lambda: evaluate(cfg))


register_configs()

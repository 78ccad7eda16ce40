#!/usr/bin/env python
"""Mode-coverage benchmarks (VEEGAN / PacGAN protocols) through ganrun's own training loop.

    python scripts/bench_modes.py --protocol ring --setups gan pacgan4 --seeds 0 1 2 --steps 20000
    python scripts/bench_modes.py --protocol stacked --setups dcgan pacdcgan2 --seeds 0 1 --steps 5000
    python scripts/bench_modes.py --report-only          # rewrite docs/RESULTS.md from the results
    python scripts/bench_modes.py --protocol grid --setups grid_modes --seeds 0 1 --steps 40000 \
        --rejection drs                                  # DRS on those finished runs

Each run composes the real config tree (a setup is a list of ganrun overrides, see
SETUPS), builds with ganrun.build and trains with ganrun.training.loop.Trainer, with a
hook that counts modes every --eval-every steps (ganrun.metrics.modes). The final
numbers come from the protocol's sample count (2,500 points; 26,000 stacked-MNIST
images) drawn from a fixed z. Every finished run is appended to --results (JSON
lines: command, overrides, metrics, curve, seconds), and --out (docs/RESULTS.md) is
rewritten from all recorded runs: mean +- standard error over seeds next to the
published figures. Stacked MNIST needs the MNIST classifier: --classifier PATH, or
one is fitted once on the embedded digits (ganrun.metrics.classifier) and saved there.

--rejection drs trains nothing: it takes the final checkpoint of each recorded run
named by --setups/--seeds/--steps, fits discriminator rejection sampling on it
(ganrun.rejection, Azadi et al. 2019; --rejection-steps estimator steps) and records
a row for setup "<setup>+drs": the counts of 2,500 accepted samples drawn with the
same evaluation seed, the run's training time plus the fit and sampling time.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ganrun.build import build, build_dataset  # noqa: E402
from ganrun.commands.train import seed_everything  # noqa: E402
from ganrun.config import register_configs  # noqa: E402
from ganrun.metrics import modes  # noqa: E402
from ganrun.paths import conf_dir  # noqa: E402
from ganrun.training.hooks import Hook  # noqa: E402
from ganrun.training.loop import Trainer  # noqa: E402


def _pac_mlp(m: int) -> list[str]:
    # PacGAN's minibatch is 100 packed samples = 100 m single samples (Sec. 5.1)
    return ["model=pacgan_mlp", f"model.pack={m}", f"trainer.batch_size={100 * m}"]


def _pac_dcgan(m: int) -> list[str]:
    # PacGAN's stacked-MNIST code: minibatch of 64 packed samples (VEEGAN_experiment/config.py)
    return ["model=dcgan", f"model.D.pack={m}", f"trainer.batch_size={64 * m}"]


PROTOCOLS = {"ring": "ring", "grid": "grid", "stacked": "stacked_mnist"}
# Additions of ours, not part of PacGAN's protocol: `_ema` reads the mode counts from an
# exponential moving average of G's weights (trainer.ema_decay, any model; Yazici et
# al. 2019); `_lindecay` decays both learning rates linearly to 0 over the run
# (optimizer.schedule=linear). Both are ganrun options applied to the shipped recipe.
EMA = ["trainer.ema_decay=0.999"]
LINDECAY = ["optimizer.schedule=linear"]


# Learning rate `k` times the recipe's 1e-4 (both nets), to test whether the grid's
# precision is limited by how far Adam can move the weights in a CPU-sized budget.
def _lr(k: int) -> list[str]:
    return [f"optimizer.lr_g={k}e-4", f"optimizer.lr_d={k}e-4"]


MIXTURE_SETUPS = {
    "gan": _pac_mlp(1),
    **{f"pacgan{m}": _pac_mlp(m) for m in (2, 3, 4)},
    "gan_ema": _pac_mlp(1) + EMA,
    "pacgan4_ema": _pac_mlp(4) + EMA,
    "gan_lindecay": _pac_mlp(1) + LINDECAY,
    "pacgan4_lindecay": _pac_mlp(4) + LINDECAY,
    **{f"pacgan4_lindecay_lr{k}x": _pac_mlp(4) + LINDECAY + _lr(k) for k in (5, 10)},
}
# The shipped experiments (conf/experiment/): the setup is the one-word command a user runs.
EXPERIMENTS = {
    "ring": {
        "ring_modes": ["experiment=ring_modes"],
        # Metz et al. 2017: the paper's ring (radius 2, std 0.02), K = 10 unrolled D steps
        "unrolled_ring_modes": ["experiment=unrolled_ring_modes"],
    },
    "grid": {"grid_modes": ["experiment=grid_modes"]},
    "stacked": {
        "stacked_mnist_modes": ["experiment=stacked_mnist_modes"],
        # the same DCGAN run with G's loss after K = 5 unrolled D steps
        "unrolled_stacked_mnist_modes": ["experiment=unrolled_stacked_mnist_modes"],
    },
}
SETUPS = {
    "ring": {**MIXTURE_SETUPS, **EXPERIMENTS["ring"]},
    "grid": {**MIXTURE_SETUPS, **EXPERIMENTS["grid"]},
    "stacked": {
        "dcgan": _pac_dcgan(1),
        **{f"pacdcgan{m}": _pac_dcgan(m) for m in (2, 3, 4)},
        **EXPERIMENTS["stacked"],
    },
}
# Lin et al. 2018 (PacGAN), Table 1 (2-D, 2,500 samples) and Table 2 (stacked MNIST in
# VEEGAN's setting, 26,000 samples): modes captured, as quoted in ganrun's task brief.
PUBLISHED = {
    ("ring", "gan"): "6.3 / 8",
    ("ring", "pacgan4"): "7.8 / 8",
    ("grid", "gan"): "17.3 / 25",
    ("grid", "pacgan4"): "24.8 / 25",
    ("stacked", "dcgan"): "99 / 1000",
    ("stacked", "pacdcgan2"): "1000 / 1000, KL 0.06",
}


NOTES_MARKER = "<!-- findings: written by hand, kept when the tables are regenerated -->"


def compose(overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hcompose(config_name="train", overrides=overrides)


class ModesProbe(Hook):
    """Counts modes every ``every`` steps; remembers the curve and the time it took."""

    name = "modes_probe"

    def __init__(self, every: int, classifier, seed: int):
        self.every, self.classifier, self.seed = every, classifier, seed
        self.curve: list[dict] = []
        self.seconds = 0.0

    def after_step(self, trainer):
        if trainer.step % self.every and trainer.step != int(trainer.t.steps):
            return None
        t0 = time.perf_counter()
        b = trainer.b
        m = modes.evaluate_generator(
            trainer.eval_generator(), b.data, self.classifier, seed=self.seed
        )
        self.seconds += time.perf_counter() - t0
        self.curve.append({"step": trainer.step, **m})
        print(f"  [{trainer.step}] {_short(m)}", flush=True)
        return m


def _short(m: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in m.items())


def run_one(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    classifier = None
    if job["classifier"]:
        from ganrun.metrics.classifier import load_classifier

        classifier = load_classifier(job["classifier"])
    cfg = compose(job["overrides"])
    seed_everything(int(cfg.seed))
    built = build(cfg)
    probe = ModesProbe(job["eval_every"], classifier, seed=10_000 + int(cfg.seed))
    run_dir = Path(job["run_dir"])
    t0 = time.perf_counter()
    trainer = Trainer(cfg, run_dir, built, hooks=[probe])
    trainer.run()
    total = time.perf_counter() - t0
    if trainer.step != job["steps"]:
        # a SIGTERM / Ctrl-C makes the loop checkpoint and return early: not a result
        raise SystemExit(
            f"{run_dir.name} stopped at step {trainer.step} of {job['steps']}; not recorded"
        )
    final = probe.curve[-1]
    return {
        **{k: job[k] for k in ("protocol", "setup", "seed", "steps", "extra", "command")},
        "overrides": job["overrides"],
        "metrics": {k: v for k, v in final.items() if k != "step"},
        "n_modes": modes.n_modes(built.data),
        "curve": probe.curve,
        "train_seconds": total - probe.seconds,
        "eval_seconds": probe.seconds,
        "threads": job["threads"],
        "run_dir": str(run_dir),
        "torch": torch.__version__,
    }


def run_rejection(job: dict) -> dict:
    """DRS on a finished run's final checkpoint (see the module doc)."""
    from ganrun import checkpoint as ckpt
    from ganrun import rejection as drs
    from ganrun.commands.sample import generator_key, load_generator

    torch.set_num_threads(job["threads"])
    raw = job["raw"]
    run_dir = Path(raw["run_dir"])
    path = ckpt.step_path(run_dir, job["steps"])
    G, train_cfg, state = load_generator(path, torch.device("cpu"))
    data = build_dataset(train_cfg)
    settings = drs.RejectionSettings(method=job["rejection"], steps=job["rejection_steps"])
    t0 = time.perf_counter()
    generator = generator_key(state)
    sampler = drs.prepare(
        settings,
        G,
        train_cfg,
        state,
        data,
        torch.device("cpu"),
        checkpoint=path,
        generator=generator,
    )
    n = modes.protocol_samples(data)
    x = sampler.generate(n, seed=10_000 + int(job["seed"]), batch_size=settings.batch_size)
    m = modes.mode_metrics(x, data, None)
    seconds = time.perf_counter() - t0
    return {
        **{k: job[k] for k in ("protocol", "seed", "steps", "extra", "command")},
        "setup": f"{job['setup']}+{job['rejection']}",
        "overrides": job["overrides"],
        "metrics": m,
        "n_modes": modes.n_modes(data),
        "curve": [],
        "train_seconds": raw["train_seconds"],
        "eval_seconds": raw["eval_seconds"] + seconds,
        "rejection": {
            "seconds": seconds,
            "fit": sampler.fit,
            **sampler.last,
            "protocol": sampler.describe(),
            "estimator": str(drs.estimator_path(path, generator, settings)),
        },
        "threads": job["threads"],
        "run_dir": str(run_dir),
        "torch": torch.__version__,
    }


def ensure_classifier(path: Path) -> Path:
    """Fit the MNIST classifier on the embedded digits once (train split; the
    held-out 500 give its accuracy) unless ``path`` exists."""
    from ganrun.metrics.classifier import save_classifier, train_classifier

    if path.is_file():
        return path
    # the classifier reads 28 px digits (modes.CLASSIFIER_SIDE); the default model's recipe
    # would raise the digits to its 32 px floor, so the resolution is set here
    digits = ["dataset=mnist_embedded", f"dataset.resolution={modes.CLASSIFIER_SIDE}"]
    x, y = build_dataset(compose(digits)).arrays()
    xt, yt = build_dataset(compose([*digits, "dataset.split=test"])).arrays()
    scale = lambda a: a.float() / 127.5 - 1  # noqa: E731
    fit = train_classifier(scale(x), y, scale(xt), yt, num_classes=10)
    print(f"classifier: {fit.accuracy:.2%} held-out accuracy, {fit.seconds:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_classifier(fit.model, path, {"accuracy": fit.accuracy, "seconds": fit.seconds})


def data_reference(protocol: str, classifier: Path | None) -> dict:
    """The metric on real data (samples of the dataset itself): the best a generator can get."""
    data = build_dataset(compose([f"dataset={PROTOCOLS[protocol]}"]))
    data.prepare()
    g = torch.Generator().manual_seed(0)
    x, _ = data.sample(modes.protocol_samples(data), g)
    clf = None
    if classifier is not None:
        from ganrun.metrics.classifier import load_classifier, read_classifier_file

        clf = load_classifier(classifier)
        acc = read_classifier_file(classifier)["meta"].get("accuracy")
    m = modes.mode_metrics(x, data, clf)
    row = {"protocol": protocol, "setup": "data", "seed": 0, "steps": 0, "extra": []}
    row["n_modes"] = modes.n_modes(data)
    return {**row, "metrics": m, **({"classifier_accuracy": acc} if classifier else {})}


# ----------------------------------------------------------------------------- report
def _mean_se(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        return f"inf in {len(values) - len(finite)} of {len(values)}"
    mean = statistics.fmean(values)
    text = f"{mean:.4g}" if abs(mean) >= 100 else f"{mean:.3g}"
    if len(values) < 2:
        return text
    return f"{text} ± {statistics.stdev(values) / math.sqrt(len(values)):.2g}"


def _goal(m: dict, total: int, points: bool) -> bool:
    """The target of ganrun's task: every mode with >= 95% high-quality samples
    (2-D), or >= 990 of the 1,000 stacked-MNIST modes."""
    if points:
        return m["modes"] == total and m["high_quality"] >= 0.95
    return m["modes"] >= 990


def write_report(rows: list[dict], out: Path) -> None:
    lines = [
        "# Mode coverage against the published tables",
        "",
        "Generated by `scripts/bench_modes.py` from the runs recorded in its results file;",
        "every number below comes from a run listed here, with its command. Protocols and",
        "definitions: `docs/EVALUATION.md` and `ganrun/metrics/modes.py`. Mean ± standard",
        "error over seeds (s.e. = sample standard deviation / √n). Published: PacGAN",
        "(Lin et al. 2018) Tables 1–2, trained far longer (400 epochs of 100,000 points",
        "for the 2-D mixtures; 50 epochs of 128,000 images for stacked MNIST).",
        "",
    ]
    for protocol in PROTOCOLS:
        prot = [r for r in rows if r["protocol"] == protocol]
        if not prot:
            continue
        pts = protocol != "stacked"
        lines += [f"## {protocol}", ""]
        head = "| setup | steps | seeds | modes | "
        head += "high quality | reverse KL |" if pts else "KL |"
        goal = "all modes & ≥95% HQ" if pts else "≥ 990 modes"
        head += f" {goal} | first met at step | published | wall / run |"
        lines += [head, "|" + " --- |" * (head.count("|") - 1)]
        groups: dict[tuple, list[dict]] = {}
        for r in prot:
            groups.setdefault((r["setup"], r["steps"], tuple(r["extra"])), []).append(r)
        for (setup, steps, extra), rs in groups.items():
            ms = [r["metrics"] for r in rs]
            total = rs[0]["n_modes"]
            cells = [_mean_se([m["modes"] for m in ms]) + f" (of {total})"]
            if pts:
                cells.append(_mean_se([100 * m["high_quality"] for m in ms]) + " %")
            ok = sum(_goal(m, total, pts) for m in ms)
            first = [
                next((c["step"] for c in r.get("curve", []) if _goal(c, total, pts)), None)
                for r in rs
            ]
            met = ", ".join(f"{s / 1000:g}k" if s else "—" for s in first) if steps else "—"
            cells.append(_mean_se([m["reverse_kl" if pts else "kl"] for m in ms]))
            wall = [r["train_seconds"] + r["eval_seconds"] for r in rs if "train_seconds" in r]
            name = "real data (reference)" if setup == "data" else setup
            name += f" ({' '.join(extra)})" if extra else ""
            lines.append(
                f"| {name} | {steps or '—'} | {len(rs)} | "
                + " | ".join(cells)
                + f" | {ok}/{len(rs)} | {met} | {PUBLISHED.get((protocol, setup), '—')} | "
                + (f"{statistics.fmean(wall) / 60:.1f} min" if wall else "—")
                + " |"
            )
        accs = [r["classifier_accuracy"] for r in prot if "classifier_accuracy" in r]
        if accs:
            lines += ["", f"MNIST classifier: {accs[-1]:.2%} held-out accuracy per digit."]
        lines.append("")
    commands = sorted({r["command"] for r in rows if r.get("command")})
    threads = sorted({r["threads"] for r in rows if "threads" in r})
    lines += [
        "## Commands",
        "",
        "```",
        *commands,
        "```",
        "",
        f"CPU runs, torch threads per run: {', '.join(map(str, threads)) or '—'}; wall time is"
        " per run (training plus the periodic mode counts) on a 2-core machine shared with",
        "other jobs, so it overstates the cost on an idle machine. A command above may have",
        "been stopped before all of its runs finished; the tables count finished runs only",
        "(the seeds column).",
        "",
    ]
    # hand-written findings below the marker survive a rewrite of the tables
    notes = out.read_text().partition(NOTES_MARKER) if out.is_file() else ("", "", "")
    lines += [NOTES_MARKER + notes[2]] if notes[1] else [NOTES_MARKER, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=sorted(PROTOCOLS))
    p.add_argument("--setups", nargs="+", default=[], help="names from SETUPS")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument(
        "--steps", type=int, help="generator steps per run (default: the setup's trainer.steps)"
    )
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--set", nargs="*", default=[], help="extra ganrun overrides for every run")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--work-dir", type=Path, default=ROOT / "outputs" / "bench_modes")
    p.add_argument("--results", type=Path, default=ROOT / "docs" / "bench_modes.jsonl")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "RESULTS.md")
    p.add_argument("--classifier", type=Path, help="MNIST classifier file (stacked protocol)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument(
        "--rejection", choices=["drs"], help="rejection sampling on the recorded runs (no training)"
    )
    p.add_argument("--rejection-steps", type=int, default=10_000, help="estimator training steps")
    args = p.parse_args()

    if not args.report_only:
        if not args.protocol or not args.setups:
            p.error("--protocol and --setups are required (or --report-only)")
        unknown = [s for s in args.setups if s not in SETUPS[args.protocol]]
        if unknown:
            p.error(
                f"unknown setups {unknown}; {args.protocol}: {', '.join(SETUPS[args.protocol])}"
            )
        clf = None
        if args.protocol == "stacked":
            clf = ensure_classifier(args.classifier or args.work_dir / "mnist_classifier.pt")
        command = "python scripts/bench_modes.py " + shlex.join(sys.argv[1:])
        jobs = []
        for setup in args.setups:
            base = [*SETUPS[args.protocol][setup], f"dataset={PROTOCOLS[args.protocol]}"]
            steps = args.steps or int(compose([*base, *args.set]).trainer.steps)
            for seed in args.seeds:
                overrides = [
                    *base,
                    f"seed={seed}",
                    f"trainer.steps={steps}",
                    "trainer.device=cpu",
                    "trainer.progress=false",
                    "logger.tensorboard=false",
                    f"trainer.log_every={args.eval_every}",
                    f"trainer.image_every={steps}",
                    f"trainer.checkpoint_every={steps}",
                    "trainer.keep_checkpoints=1",
                    *args.set,
                ]
                name = f"{args.protocol}-{setup}-s{seed}-{steps}"
                jobs.append(
                    {
                        "protocol": args.protocol,
                        "setup": setup,
                        "seed": seed,
                        "steps": steps,
                        "extra": list(args.set),
                        "command": command,
                        "overrides": overrides,
                        "eval_every": args.eval_every,
                        "threads": args.threads,
                        "classifier": str(clf) if clf else None,
                        "run_dir": str(args.work_dir / name),
                    }
                )
        if args.rejection:
            if args.protocol == "stacked":
                p.error("--rejection runs on the 2-D protocols (ring, grid)")
            done = read_rows(args.results)
            for job in jobs:
                job.update(rejection=args.rejection, rejection_steps=args.rejection_steps)
                job["raw"] = next(
                    (
                        r
                        for r in reversed(done)
                        if (r["protocol"], r["setup"], r["seed"], r["steps"], r["extra"])
                        == (job["protocol"], job["setup"], job["seed"], job["steps"], job["extra"])
                    ),
                    None,
                )
                if job["raw"] is None:
                    p.error(f"no recorded run {job['run_dir']} in {args.results}: train it first")
        args.results.parent.mkdir(parents=True, exist_ok=True)
        if not any(
            r["protocol"] == args.protocol and r["setup"] == "data" for r in read_rows(args.results)
        ):
            with args.results.open("a") as f:
                f.write(json.dumps(data_reference(args.protocol, clf)) + "\n")
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            work = run_rejection if args.rejection else run_one
            for future in as_completed([pool.submit(work, job) for job in jobs]):
                row = future.result()
                print(
                    f"{row['protocol']} {row['setup']} seed {row['seed']}: {_short(row['metrics'])}"
                    f" ({row['train_seconds']:.0f} s training)",
                    flush=True,
                )
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    write_report(read_rows(args.results), args.out)


if __name__ == "__main__":
    main()

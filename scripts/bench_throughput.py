#!/usr/bin/env python
"""Training throughput (images/s) and peak memory of any ganrun config on `dataset=fake`.

    python scripts/bench_throughput.py                         # DCGAN-64 defaults, fp32
    python scripts/bench_throughput.py model=wgan_gp trainer.batch_size=64
    python scripts/bench_throughput.py --compare-reference     # also a hand-written loop
    python scripts/bench_throughput.py --compare-reference \\
        --variants fp32,bf16,bf16+channels_last,fp16,compile  # side by side, one run

img/s counts real images seen by D per second (batch_size x n_critic per
generator step), measured over `--steps` generator steps after `--warmup` steps,
through ganrun's own training loop (Trainer.run), not a copy of it.

A variant is `+`-joined options: a precision (fp32, bf16, fp16: trainer.precision),
`channels_last` (trainer.channels_last=true) and `compile` (trainer.compile=true;
`compile:<mode>` for trainer.compile_mode). Every variant is measured for ganrun and,
with --compare-reference, for a hand-written PyTorch loop of the same DCGAN and
batch under the same options (the same autocast, GradScalers, channels_last and
torch.compile), written the way the DCGAN example of the PyTorch examples repository
trains (sigmoid + BCELoss, D on real then on G(z).detach(), the same G(z) reused for
G's step; under autocast the BCE is taken in fp32 outside it, as autocast requires).
Both hold the same in-memory random data as uint8 and scale each batch to [-1, 1].

`--overhead` measures instead what logging, pictures and checkpoints cost at the
default intervals (trainer.log_every, image_every, checkpoint_every of
conf/trainer/default.yaml, with the default TensorBoard logger): runs of the same
length with each kind of event made frequent are timed against a run where none
happens but the final ones every run has, alternating, so each event's cost is the
median extra seconds per extra event; the overhead is the sum of cost / interval over
the median step time.

Each measurement runs in a fresh process (spawned), so each has its own peak memory
(CUDA: torch.cuda.max_memory_allocated; CPU: the growth of the process's peak RSS
from before the networks are built) and compile caches do not carry over; the
measurements alternate (repeat r: every variant, ganrun then reference), so the
ratio is fair on a shared machine. The medians are reported.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ganrun.build import build, resolve_device  # noqa: E402
from ganrun.commands.train import seed_everything  # noqa: E402
from ganrun.config import register_configs  # noqa: E402
from ganrun.paths import conf_dir  # noqa: E402
from ganrun.training.loop import Trainer  # noqa: E402

DEFAULTS = [
    "model=dcgan",
    "dataset=fake",
    "dataset.resolution=64",
    "dataset.channels=3",
    "logger=none",
]
PRECISIONS = ("fp32", "bf16", "fp16")


class Variant(NamedTuple):
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None

    @classmethod
    def parse(cls, text: str) -> Variant:
        fields: dict = {}
        for part in text.split("+"):
            name, _, mode = part.partition(":")
            if name in PRECISIONS:
                fields["precision"] = name
            elif name in ("channels_last", "cl"):
                fields["channels_last"] = True
            elif name == "compile":
                fields["compile"] = True
                fields["compile_mode"] = mode or None
            else:
                raise SystemExit(
                    f"bench_throughput: unknown variant part {part!r} in {text!r}; use "
                    "fp32|bf16|fp16, channels_last, compile[:mode], joined by +"
                )
        return cls(**fields)

    @property
    def name(self) -> str:
        parts = [self.precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compile" + (f":{self.compile_mode}" if self.compile_mode else ""))
        return "+".join(parts)

    def overrides(self) -> list[str]:
        out = [f"trainer.precision={self.precision}"]
        if self.channels_last:
            out.append("trainer.channels_last=true")
        if self.compile:
            out.append("trainer.compile=true")
            if self.compile_mode:
                out.append(f"trainer.compile_mode={self.compile_mode}")
        return out


def compose(overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hcompose(config_name="train", overrides=overrides)


# ----------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory of what runs inside: CUDA's allocator peak, or on the CPU the growth
    of this process's peak resident set (Linux ru_maxrss) from the start."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.start = _max_rss_bytes()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self.bytes = _max_rss_bytes() - self.start
        return False


def _max_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# ----------------------------------------------------------------------------- ganrun
def ganrun_img_per_s(overrides: list[str], steps: int) -> float:
    """One run of ganrun's Trainer for 2 x `steps` generator steps; img/s of the
    second half (the first absorbs warm-up, and compilation). The final checkpoint
    and picture are written after the timed interval."""
    values, _ = train_once(
        [
            *overrides,
            f"trainer.steps={2 * steps}",
            f"trainer.log_every={steps}",
            f"trainer.checkpoint_every={10**9}",
            f"trainer.image_every={10**9}",
        ]
    )
    return values["perf/img_per_s"]


def train_once(overrides: list[str]) -> tuple[dict, float]:
    """One run of ganrun's Trainer (seed 0, no progress bar, a temporary run dir) on
    the benchmark's DEFAULTS + `overrides`: its final values and the seconds of
    Trainer.run (the networks are built before the clock starts)."""
    cfg = compose([*DEFAULTS, *overrides, "trainer.progress=false"])
    seed_everything(0)
    built = build(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        values = Trainer(cfg, Path(tmp), built).run()
        return values, time.perf_counter() - t0


# ----------------------------------------------------------------------------- overhead
EVENTS = ("log", "image", "checkpoint")


def ganrun_wall_s(overrides: list[str], steps: int, event: str | None, every: int) -> float:
    """Seconds of Trainer.run for `steps` generator steps with the TensorBoard logger.
    No logging, picture or checkpoint happens before the last step (which has all
    three in every run), except `event`, which happens every `every` steps."""
    never = {name: steps for name in EVENTS}
    if event is not None:
        never[event] = every
    _, seconds = train_once(
        [
            *overrides,
            "logger=tensorboard",
            f"trainer.steps={steps}",
            f"trainer.log_every={never['log']}",
            f"trainer.image_every={never['image']}",
            f"trainer.checkpoint_every={never['checkpoint']}",
        ]
    )
    return seconds


def overhead(overrides: list[str], steps: int, repeats: int, every: int) -> dict:
    """Cost of one log step / picture / checkpoint and their share of step time at the
    default intervals; measured in this process, the runs alternating."""
    if steps % every or steps // every < 2:
        raise SystemExit(f"bench_throughput: --steps {steps} must be a multiple >= 2 of {every}")
    defaults = compose([*DEFAULTS, *overrides]).trainer
    ganrun_wall_s(overrides, every, None, every)  # warm-up: first-call costs land here
    walls: dict[str, list[float]] = {"none": [], **{e: [] for e in EVENTS}}
    for r in range(repeats):
        for event in walls:
            interval = 1 if event == "log" else every
            wall = ganrun_wall_s(overrides, steps, None if event == "none" else event, interval)
            walls[event].append(wall)
            print(f"repeat {r + 1}: {event:<11} {wall:.2f} s for {steps} steps", flush=True)
    base = statistics.median(walls["none"])
    step_s = base / steps
    out = {"steps": steps, "step_s": step_s, "events": {}}
    share = 0.0
    for event in EVENTS:
        interval = 1 if event == "log" else every
        extra = steps // interval - 1  # the last step has one in every run
        cost = statistics.median(w - b for w, b in zip(walls[event], walls["none"])) / extra
        default = int(defaults[f"{event}_every"])
        part = max(cost, 0.0) / default / step_s
        share += part
        out["events"][event] = {"cost_s": cost, "default_every": default, "share": part}
    out["share"] = share
    return out


# ----------------------------------------------------------------------------- reference loop
def reference_models(nz: int, ngf: int, ndf: int, nc: int) -> tuple[nn.Module, nn.Module]:
    """DCGAN-64 as the PyTorch examples define it (ngf = ndf = 64, nz = 100)."""
    G = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )  # fmt: skip
    D = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
    )  # fmt: skip
    return G, D


def reference_img_per_s(
    batch: int, warmup: int, steps: int, device: torch.device, variant: Variant | None = None
) -> float:
    variant = variant or Variant()
    torch.manual_seed(0)
    nz = 100
    G, D = reference_models(nz, 64, 64, 3)
    G, D = G.to(device), D.to(device)
    fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
    if variant.channels_last:
        G, D = G.to(memory_format=fmt), D.to(memory_format=fmt)
    data = torch.randint(0, 256, (2048, 3, 64, 64), dtype=torch.uint8, device=device)
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(variant.precision)
    fp16 = variant.precision == "fp16"
    scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
    scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
    if variant.compile:
        kwargs = {"mode": variant.compile_mode} if variant.compile_mode else {}
        G_run, D_run = torch.compile(G, **kwargs), torch.compile(D, **kwargs)
    else:
        G_run, D_run = G, D

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def iteration(i):
        idx = torch.randint(0, data.shape[0], (batch,), device=device)
        real = data[idx].float().div_(127.5).sub_(1.0).contiguous(memory_format=fmt)
        # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
        D.zero_grad()
        label = torch.full((batch,), 1.0, device=device)
        with autocast():
            out_real = D_run(real)
        err_real = criterion(out_real.float().view(-1), label)
        scaler_d.scale(err_real).backward()
        noise = torch.randn(batch, nz, 1, 1, device=device)
        with autocast():
            fake = G_run(noise)
            out_fake = D_run(fake.detach())
        label.fill_(0.0)
        err_fake = criterion(out_fake.float().view(-1), label)
        scaler_d.scale(err_fake).backward()
        scaler_d.step(opt_d)
        scaler_d.update()
        # (2) update G: maximize log(D(G(z)))
        G.zero_grad()
        label.fill_(1.0)
        with autocast():
            out = D_run(fake)
        err_g = criterion(out.float().view(-1), label)
        scaler_g.scale(err_g).backward()
        scaler_g.step(opt_g)
        scaler_g.update()
        return err_g

    for i in range(warmup):
        iteration(i)
    last = None
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        last = iteration(i)
    last.item()  # wait for the device
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- measurements
def measure(kind: str, overrides: list[str], variant: Variant, steps: int) -> dict:
    """One measurement (in a spawned process): img/s and peak memory in MiB."""
    cfg = compose([*DEFAULTS, *overrides])
    device = resolve_device(cfg.trainer.device)
    with PeakMemory(device) as mem:
        if kind == "ganrun":
            rate = ganrun_img_per_s([*overrides, *variant.overrides()], steps)
        else:
            rate = reference_img_per_s(int(cfg.trainer.batch_size), steps, steps, device, variant)
    return {"img_per_s": rate, "peak_mib": mem.bytes / 2**20}


def _child(queue, kind, overrides, variant, steps, threads):
    try:
        if threads:
            torch.set_num_threads(threads)
        queue.put(("ok", measure(kind, overrides, variant, steps)))
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        queue.put(("error", f"{type(e).__name__}: {e}"))


def isolated(kind: str, overrides: list[str], variant: Variant, steps: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_child, args=(queue, kind, overrides, variant, steps, torch.get_num_threads())
    )
    proc.start()
    status, result = queue.get()
    proc.join()
    if status != "ok":
        raise SystemExit(f"bench_throughput: {kind} {variant.name} failed: {result}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "overrides", nargs="*", help="ganrun config overrides (dataset=fake is the default)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=20,
        help="timed generator steps per repeat (after as many warm-up steps)",
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="alternating repeats; the median is reported"
    )
    p.add_argument(
        "--compare-reference", action="store_true", help="also time the hand-written DCGAN-64 loop"
    )
    p.add_argument(
        "--variants",
        default="fp32",
        help="comma-separated variants, each +-joined: fp32|bf16|fp16, channels_last, "
        "compile[:mode] (e.g. fp32,bf16+channels_last,compile)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (no peak memory per measurement; faster start)",
    )
    p.add_argument(
        "--overhead",
        action="store_true",
        help="measure logging + picture + checkpoint overhead at the default intervals",
    )
    p.add_argument(
        "--every",
        type=int,
        default=10,
        help="with --overhead: the interval of pictures and checkpoints in the timed runs",
    )
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    args = p.parse_args()
    if args.overhead:
        cfg = compose([*DEFAULTS, *args.overrides])
        print(
            f"device={resolve_device(cfg.trainer.device)} threads={torch.get_num_threads()} "
            f"torch={torch.__version__} model={cfg.model.name} "
            f"batch={cfg.trainer.batch_size} overhead at the default intervals",
            flush=True,
        )
        got = overhead(args.overrides, args.steps, args.repeats, args.every)
        print(f"step time {got['step_s'] * 1000:.1f} ms (median of runs without events)")
        for event, e in got["events"].items():
            print(
                f"{event:<11} {e['cost_s'] * 1000:8.1f} ms each, every {e['default_every']:>5} "
                f"steps by default: {100 * e['share']:.3f} % of step time"
            )
        print(f"total      {100 * got['share']:.3f} % of step time at the default intervals")
        if args.json:
            args.json.write_text(json.dumps({"overrides": args.overrides, **got}, indent=2))
        return
    variants = [Variant.parse(v) for v in args.variants.split(",") if v]

    cfg = compose([*DEFAULTS, *args.overrides])
    device = resolve_device(cfg.trainer.device)
    batch = int(cfg.trainer.batch_size)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(
        f"device={device}{f' ({gpu})' if gpu else ''} threads={torch.get_num_threads()} "
        f"torch={torch.__version__} model={cfg.model.name} batch={batch} "
        f"n_critic={cfg.trainer.n_critic} data={tuple(cfg.dataset.values())[1:3]}",
        flush=True,
    )
    kinds = ["ganrun", "reference"] if args.compare_reference else ["ganrun"]
    runs = {v.name: {k: [] for k in kinds} for v in variants}
    for r in range(args.repeats):
        for v in variants:
            for kind in kinds:
                if args.in_process:
                    got = {"img_per_s": None, "peak_mib": None}
                    if kind == "ganrun":
                        got["img_per_s"] = ganrun_img_per_s(
                            [*args.overrides, *v.overrides()], args.steps
                        )
                    else:
                        got["img_per_s"] = reference_img_per_s(
                            batch, args.steps, args.steps, device, v
                        )
                else:
                    got = isolated(kind, args.overrides, v, args.steps)
                runs[v.name][kind].append(got)
                mem = f", peak {got['peak_mib']:.0f} MiB" if got["peak_mib"] is not None else ""
                print(
                    f"repeat {r + 1}: {v.name:<24} {kind:<9} {got['img_per_s']:.1f} img/s{mem}",
                    flush=True,
                )
    median = {
        name: {
            kind: {
                key: statistics.median(m[key] for m in ms)
                if all(m[key] is not None for m in ms)
                else None
                for key in ("img_per_s", "peak_mib")
            }
            for kind, ms in per.items()
        }
        for name, per in runs.items()
    }
    base = median[variants[0].name]["ganrun"]["img_per_s"]
    header = f"{'variant':<26}{'ganrun img/s':>13}{'peak MiB':>10}"
    if args.compare_reference:
        header += f"{'reference img/s':>17}{'peak MiB':>10}{'ratio':>7}"
    print(header + f"{'vs ' + variants[0].name:>14}")
    for v in variants:
        m = median[v.name]
        row = f"{v.name:<26}{m['ganrun']['img_per_s']:>13.1f}{_mib(m['ganrun']['peak_mib']):>10}"
        if args.compare_reference:
            ref = m["reference"]
            row += f"{ref['img_per_s']:>17.1f}{_mib(ref['peak_mib']):>10}"
            row += f"{m['ganrun']['img_per_s'] / ref['img_per_s']:>7.3f}"
        print(row + f"{m['ganrun']['img_per_s'] / base:>13.2f}x")
    if args.json:
        first = variants[0].name
        args.json.write_text(
            json.dumps(
                {
                    "device": str(device),
                    "gpu": gpu,
                    "torch": str(torch.__version__),
                    "threads": torch.get_num_threads(),
                    "batch": batch,
                    "overrides": args.overrides,
                    "variants": {"runs": runs, "median": median},
                    # the first variant alone, in the layout of earlier versions
                    "runs": {k: [m["img_per_s"] for m in v] for k, v in runs[first].items()},
                    "median": {k: v["img_per_s"] for k, v in median[first].items()},
                },
                indent=2,
            )
        )


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Training throughput (images/s) of any ganrun config on `dataset=fake`.

    python scripts/bench_throughput.py                         # DCGAN-64 defaults
    python scripts/bench_throughput.py model=wgan_gp trainer.batch_size=64
    python scripts/bench_throughput.py --compare-reference     # also a hand-written loop

img/s counts real images seen by D per second (batch_size x n_critic per
generator step), measured over `--steps` generator steps after `--warmup` steps,
through ganrun's own training loop (Trainer.run), not a copy of it.

--compare-reference also times a hand-written PyTorch loop of the same DCGAN
and batch, written the way the DCGAN example of the PyTorch examples repository
trains (sigmoid + BCELoss, D on real then on G(z).detach(), the same G(z)
reused for G's step). Both use the same in-memory random data and run in this
one process, alternating, so the ratio is fair on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

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
    "logger.tensorboard=false",
]


def compose(overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return hcompose(config_name="train", overrides=overrides)


def ganrun_img_per_s(overrides: list[str], steps: int) -> float:
    """One run of ganrun's Trainer for 2 x `steps` generator steps; img/s of the
    second half (the first absorbs warm-up). The final checkpoint and picture
    are written after the timed interval."""
    cfg = compose(
        [
            *DEFAULTS,
            *overrides,
            f"trainer.steps={2 * steps}",
            f"trainer.log_every={steps}",
            "trainer.progress=false",
            f"trainer.checkpoint_every={10**9}",
            f"trainer.image_every={10**9}",
        ]
    )
    seed_everything(0)
    built = build(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        values = Trainer(cfg, Path(tmp), built).run()
    return values["perf/img_per_s"]


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


def reference_img_per_s(batch: int, warmup: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    nz = 100
    G, D = reference_models(nz, 64, 64, 3)
    G, D = G.to(device), D.to(device)
    data = torch.rand(2048, 3, 64, 64, device=device) * 2 - 1
    criterion = nn.BCELoss()
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def iteration(i):
        idx = torch.randint(0, data.shape[0], (batch,), device=device)
        real = data[idx]
        # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
        D.zero_grad()
        label = torch.full((batch,), 1.0, device=device)
        err_real = criterion(D(real).view(-1), label)
        err_real.backward()
        noise = torch.randn(batch, nz, 1, 1, device=device)
        fake = G(noise)
        label.fill_(0.0)
        err_fake = criterion(D(fake.detach()).view(-1), label)
        err_fake.backward()
        opt_d.step()
        # (2) update G: maximize log(D(G(z)))
        G.zero_grad()
        label.fill_(1.0)
        err_g = criterion(D(fake).view(-1), label)
        err_g.backward()
        opt_g.step()
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
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    args = p.parse_args()

    cfg = compose([*DEFAULTS, *args.overrides])
    device = resolve_device(cfg.trainer.device)
    batch = int(cfg.trainer.batch_size)
    print(
        f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} model={cfg.model.name} "
        f"batch={batch} n_critic={cfg.trainer.n_critic} data={tuple(cfg.dataset.values())[1:3]}",
        flush=True,
    )
    results: dict[str, list[float]] = {"ganrun": [], "reference": []}
    for r in range(args.repeats):
        results["ganrun"].append(ganrun_img_per_s(args.overrides, args.steps))
        print(f"repeat {r + 1}: ganrun {results['ganrun'][-1]:.1f} img/s", flush=True)
        if args.compare_reference:
            results["reference"].append(reference_img_per_s(batch, args.steps, args.steps, device))
            print(f"repeat {r + 1}: reference {results['reference'][-1]:.1f} img/s", flush=True)
    summary = {k: statistics.median(v) for k, v in results.items() if v}
    print(f"ganrun    median {summary['ganrun']:.1f} img/s")
    if args.compare_reference:
        print(f"reference median {summary['reference']:.1f} img/s")
        print(f"ratio ganrun/reference {summary['ganrun'] / summary['reference']:.3f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"device": str(device), "batch": batch, "runs": results, "median": summary},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

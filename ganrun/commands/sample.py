"""ganrun sample ckpt=<run dir or checkpoint> n=64 nrow=8 out=grid.png seed=0

Rebuilds G from the config stored in the checkpoint (nothing else needed) on
any device — a checkpoint trained on a GPU samples on a CPU — and writes:
a grid (default), ``per_image=true`` n single PNGs into the folder ``out``, or
``interpolate=true`` rows of spherical interpolations between latent pairs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image

from ganrun import checkpoint as ckpt
from ganrun import viz
from ganrun.build import build_dataset, build_models, resolve_device
from ganrun.commands import report_errors
from ganrun.config import register_configs
from ganrun.errors import CheckpointError, ConfigError, GanrunError
from ganrun.paths import conf_dir

log = logging.getLogger(__name__)


def load_generator(target: str | Path, device: torch.device, use_ema: bool = True):
    """(G in eval mode, stored config, checkpoint state) from a run dir or file."""
    path, state = ckpt.load(target, map_location="cpu")
    cfg = OmegaConf.create(state["config"])
    data = state.get("data") or {}
    if "shape" not in data:
        raise CheckpointError(f"{path} has no data shape; it was not written by `ganrun train`")
    G, _ = build_models(cfg, tuple(data["shape"]), int(data.get("num_classes", 0)))
    models = state["models"]
    key = "G_ema" if use_ema and "G_ema" in models else "G"
    try:
        G.load_state_dict(models[key])
    except RuntimeError as e:
        first = next(
            (ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln),
            str(e).splitlines()[0],
        )
        raise CheckpointError(
            f"{path}: weights do not match the architecture in its config: {first[:200]}"
        ) from None
    G = G.to(device).eval().requires_grad_(False)
    log.info(
        "loaded %s (%s, step %d) from %s", key, cfg.model.get("name", "model"), state["step"], path
    )
    return G, cfg, state


def _labels(G, n: int, device) -> torch.Tensor | None:
    nc = getattr(G, "num_classes", 0)
    return (torch.arange(n, device=device) % nc) if nc else None


@torch.no_grad()
def generate(G, z: torch.Tensor, c: torch.Tensor | None, chunk: int = 256) -> torch.Tensor:
    cs = c.split(chunk) if c is not None else [None] * len(z.split(chunk))
    return torch.cat([G(zi, ci) for zi, ci in zip(z.split(chunk), cs)])


def sample(cfg: DictConfig, default_out: Path) -> list[Path]:
    if cfg.n < 1 or cfg.nrow < 1:
        raise ConfigError(f"n and nrow must be >= 1, got n={cfg.n}, nrow={cfg.nrow}")
    if cfg.per_image and cfg.interpolate:
        raise ConfigError("choose one of per_image=true and interpolate=true")
    if cfg.interpolate and cfg.steps < 2:
        raise ConfigError(f"steps must be >= 2 for an interpolation, got {cfg.steps}")
    device = resolve_device(cfg.device)
    G, train_cfg, state = load_generator(cfg.ckpt, device, use_ema=cfg.use_ema)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    trunc = cfg.truncation
    out = Path(cfg.out) if cfg.out else default_out

    if cfg.interpolate:
        rows = max(1, cfg.n // cfg.steps)
        za = G.sample_z(rows, device=device, generator=gen, truncation=trunc)
        zb = G.sample_z(rows, device=device, generator=gen, truncation=trunc)
        t = torch.linspace(0, 1, cfg.steps, device=device)
        z = viz.slerp(za, zb, t).reshape(rows * cfg.steps, -1)
        if G.z_dist == "uniform":
            z = z.clamp(-1, 1)  # keep the path inside the prior's support
        c = _labels(G, rows, device)
        c = c.repeat_interleave(cfg.steps) if c is not None else None
        x = generate(G, z, c)
        return [_write_grid(x, cfg.steps, out)]

    z = G.sample_z(cfg.n, device=device, generator=gen, truncation=trunc)
    x = generate(G, z, _labels(G, cfg.n, device))
    if cfg.per_image:
        if x.dim() != 4:
            raise ConfigError(
                "per_image=true needs an image model; this checkpoint generates 2-D points"
            )
        folder = Path(cfg.out) if cfg.out else default_out.with_suffix("")
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, img in enumerate(x):
            p = folder / f"{i:06d}.png"
            save_image(viz.image_grid(img.unsqueeze(0), nrow=1, padding=0), p)
            paths.append(p)
        print(f"wrote {len(paths)} images to {folder}")
        return paths
    centers = _centers(train_cfg) if x.dim() == 2 else None
    return [_write_grid(x, cfg.nrow, out, centers)]


def _centers(train_cfg):
    """The mixture's component centres, drawn on 2-D scatter plots."""
    try:
        return getattr(build_dataset(train_cfg), "centers", None)
    except GanrunError:
        return None


def _write_grid(x: torch.Tensor, nrow: int, out: Path, centers=None) -> Path:
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"out={out} should name a .png (or .jpg) file")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(viz.picture(x, nrow=nrow, centers=centers), out)
    print(f"wrote {out}")
    return out


@hydra.main(config_path=str(conf_dir()), config_name="sample", version_base="1.3")
def main(cfg: DictConfig):
    default_out = Path(HydraConfig.get().runtime.output_dir) / "samples.png"
    report_errors(lambda: sample(cfg, default_out))


register_configs()

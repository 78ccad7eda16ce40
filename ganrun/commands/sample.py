"""ganrun sample ckpt=<run dir or checkpoint> n=64 nrow=8 out=grid.png seed=0

Rebuilds G from the config stored in the checkpoint (nothing else needed) on
any device — a checkpoint trained on a GPU samples on a CPU — and writes:
a grid (default), ``per_image=true`` n single PNGs into the folder ``out``, or
``interpolate=true`` rows of spherical interpolations between latent pairs.
Class-conditional models draw one row per class (``class_idx=k``: all of class
k); ``traverse=true code=i`` varies one latent code of an InfoGAN per row.
``numbered=true`` writes the grid with tile numbers, and ``arithmetic.a=[..]
arithmetic.b=[..] arithmetic.c=[..]`` (same seed= and n=) the latent arithmetic
A - B + C of those tiles (Radford et al. 2015, Sec. 6.3; ganrun.sampling.arithmetic).
Figures only some generators draw (StyleGAN's ``mixing=true``) come from the
generator itself (``G.figure(name, settings, ...)``), so this command imports no model.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ganrun import checkpoint as ckpt
from ganrun import fsio, viz
from ganrun.build import build_dataset, build_models, resolve_device
from ganrun.commands import report_errors
from ganrun.config import register_configs
from ganrun.errors import CheckpointError, ConfigError, GanrunError
from ganrun.models.base import truncation_args
from ganrun.paths import conf_dir
from ganrun.rejection import RejectionSettings
from ganrun.training.ema import spectral_norm_vectors
from ganrun.training.guard import refuse_nonfinite

log = logging.getLogger(__name__)

OUT_ELSEWHERE = "choose another out=..."


def generator_key(state: dict, use_ema: bool = True) -> str:
    """Which of a checkpoint's generators is read: "G_ema" when kept and wanted, else "G"."""
    return "G_ema" if use_ema and "G_ema" in state["models"] else "G"


def load_generator(target: str | Path, device: torch.device, use_ema: bool = True):
    """(G in eval mode, stored config, checkpoint state) from a run dir or file."""
    _, G, cfg, state = load_generator_with_path(target, device, use_ema)
    return G, cfg, state


def load_generator_with_path(target: str | Path, device: torch.device, use_ema: bool = True):
    """(checkpoint file, G in eval mode, stored config, checkpoint state) from a run dir
    or file; the file is the one ``ckpt.load`` read (a run dir's newest readable one)."""
    path, state = ckpt.load(target, map_location="cpu")
    cfg = OmegaConf.create(state["config"])
    data = state.get("data") or {}
    if "shape" not in data:
        raise CheckpointError(f"{path} has no data shape; it was not written by `ganrun train`")
    G, _ = build_models(cfg, tuple(data["shape"]), int(data.get("num_classes", 0)))
    models = state["models"]
    key = generator_key(state, use_ema)
    refuse_nonfinite(path, state, [key])
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
    if key == "G_ema":  # checkpoints from before G_ema kept its own spectral-norm vectors
        spectral_norm_vectors(G)
    G = G.to(device).eval().requires_grad_(False)
    log.info(
        "loaded %s (%s, step %d) from %s", key, cfg.model.get("name", "model"), state["step"], path
    )
    return path, G, cfg, state


def _labels(G, n: int, device, class_idx: int | None = None) -> torch.Tensor | None:
    nc = getattr(G, "num_classes", 0)
    if nc and class_idx is not None:
        return torch.full((n,), int(class_idx), device=device, dtype=torch.long)
    return (torch.arange(n, device=device) % nc) if nc else None


def check_code_modes(cfg: DictConfig) -> None:
    """Combinations of class_idx / traverse with the other modes (before loading)."""
    if cfg.traverse and (cfg.per_image or cfg.interpolate):
        raise ConfigError(
            "traverse=true draws its own grid; drop per_image=true / interpolate=true"
        )
    if cfg.traverse and cfg.steps < 2:
        raise ConfigError(f"steps must be >= 2 for a traversal, got {cfg.steps}")
    if cfg.traverse and not cfg.traverse_range > 0:
        raise ConfigError(f"traverse_range must be > 0, got {cfg.traverse_range}")
    if not cfg.traverse and cfg.code != 0:
        raise ConfigError("code=... picks the code to vary with traverse=true; add traverse=true")


# ganrun sample holds all n images (float32) in memory at once and draws one picture
# of them: beyond this, a grid is unreadable and memory runs out (n=1e9 asked for 64 GB)
MAX_SAMPLES = 10_000
MAX_SAMPLE_BYTES = 2**30


def max_samples(data_shape=None) -> int:
    """The largest n that ``ganrun sample`` draws for data of ``data_shape``."""
    per_image = 4 * math.prod(int(d) for d in data_shape) if data_shape else 1
    return max(1, min(MAX_SAMPLES, MAX_SAMPLE_BYTES // per_image))


def check_count(cfg: DictConfig, data_shape=None) -> None:
    limit = max_samples(data_shape)
    for key in ("steps", "mixing_columns", "mixing_rows"):  # a row's or a column's length
        if cfg[key] > limit:
            raise ConfigError(f"{key}={cfg[key]} is too large: at most {limit} per picture")
    node = cfg.arithmetic  # 4 rows of (the longest row + a gap + the means' column)
    longest = max(node.noise, *(len(node[g]) for g in ("a", "b", "c")))
    if 4 * (longest + 2) > limit:
        raise ConfigError(
            f"arithmetic rows of {longest} images are too long: at most {limit // 4 - 2} "
            "exemplars per group and arithmetic.noise results"
        )
    if cfg.mixing and (cfg.mixing_columns + 1) * (3 * cfg.mixing_rows + 1) > limit:
        raise ConfigError(
            f"mixing_columns={cfg.mixing_columns} and mixing_rows={cfg.mixing_rows} make a "
            f"grid of more than {limit} images; lower them"
        )
    if cfg.n > limit:
        shape = "x".join(str(int(d)) for d in data_shape) if data_shape else ""
        raise ConfigError(
            f"n={cfg.n} is more than ganrun sample draws at once: at most n={limit}"
            + (f" for {shape} samples" if shape else "")
            + ", held in memory together (it refuses rather than generating in chunks); "
            "for more images run it again with another seed= and out=, or score many "
            "samples with ganrun eval"
        )


def check_settings(cfg: DictConfig) -> None:
    """The settings of ganrun sample that need no checkpoint (preflight and sample())."""
    if cfg.n < 1 or cfg.nrow < 1:
        raise ConfigError(f"n and nrow must be >= 1, got n={cfg.n}, nrow={cfg.nrow}")
    check_count(cfg)
    if cfg.per_image and cfg.interpolate:
        raise ConfigError("choose one of per_image=true and interpolate=true")
    if cfg.interpolate and cfg.steps < 2:
        raise ConfigError(f"steps must be >= 2 for an interpolation, got {cfg.steps}")
    if cfg.truncation is not None and not cfg.truncation > 0:
        raise ConfigError(f"truncation must be a threshold > 0 (or null), got {cfg.truncation}")
    if cfg.class_idx is not None and cfg.class_idx < 0:
        raise ConfigError(f"class_idx must be a class index >= 0 (or null), got {cfg.class_idx}")
    if cfg.out and not cfg.per_image and Path(str(cfg.out)).suffix.lower() not in (
        ".png", ".jpg", ".jpeg",
    ):  # fmt: skip
        raise ConfigError(f"out={cfg.out} should name a .png (or .jpg) file")
    check_code_modes(cfg)
    check_mixing_mode(cfg)
    from ganrun.sampling import arithmetic

    arithmetic.check_settings(cfg)
    rejection = RejectionSettings.from_config(cfg.rejection)
    rejection.check()
    if rejection.enabled and (cfg.interpolate or cfg.traverse or cfg.mixing):
        raise ConfigError(
            "rejection.method works on plain grids of samples; drop interpolate / traverse / mixing"
        )
    resolve_device(cfg.device)


def check(cfg: DictConfig) -> None:
    """Preflight of ganrun sample: the settings, then the checkpoint (readable, finite,
    and n within what its data shape allows), before Hydra makes a run dir."""
    check_settings(cfg)
    path, state = ckpt.load(cfg.ckpt)
    refuse_nonfinite(path, state, [generator_key(state, cfg.use_ema)])
    check_count(cfg, (state.get("data") or {}).get("shape"))
    if cfg.numbered or _arithmetic(cfg):
        from ganrun.sampling import arithmetic

        arithmetic.check_stored_model(
            OmegaConf.create(state["config"]), state.get("data") or {}, _arithmetic(cfg)
        )


def _arithmetic(cfg: DictConfig) -> bool:
    from ganrun.sampling import arithmetic

    return arithmetic.enabled(cfg.arithmetic)


def check_model_modes(cfg: DictConfig, G) -> None:
    """class_idx / traverse / numbered / arithmetic against what the loaded generator can do."""
    if cfg.numbered or _arithmetic(cfg):
        from ganrun.sampling import arithmetic

        arithmetic.check_generator(G, G.data_shape, _arithmetic(cfg))
    nc = getattr(G, "num_classes", 0)
    if cfg.class_idx is not None:
        if not nc:
            raise ConfigError(
                "class_idx needs a class-conditional model (e.g. model=cgan); this one is unconditional"
            )
        if not 0 <= cfg.class_idx < nc:
            raise ConfigError(f"class_idx={cfg.class_idx} is not a class; choose 0..{nc - 1}")
    if cfg.traverse:
        codes = G.codes() if hasattr(G, "codes") else []
        if not codes:
            raise ConfigError("traverse=true needs a model with latent codes (model=infogan)")
        if not 0 <= cfg.code < len(codes):
            kinds = ", ".join(f"{i}={kind}" for i, (kind, _) in enumerate(codes))
            raise ConfigError(f"code={cfg.code} is not a latent code of this model; choose {kinds}")


def class_rows(G, n: int, device) -> tuple[int, int, torch.Tensor] | None:
    """One row per class (the row index is the label), n // classes columns:
    (columns, samples, labels); None when n is below the number of classes."""
    cols = n // G.num_classes
    if cols < 1:
        return None
    labels = torch.arange(G.num_classes, device=device).repeat_interleave(cols)
    return cols, labels.numel(), labels


def traversal_latents(G, cfg: DictConfig, gen, device):
    """InfoGAN's latent-code figure (Chen et al. 2016, Fig. 2): code ``cfg.code``
    varies along each row (every category, or ``steps`` values over
    [-traverse_range, traverse_range]); z and the other codes are fixed per row.
    Returns (latents, labels or None, columns)."""
    kind, k = G.codes()[cfg.code]
    if kind == "categorical":
        values = [float(v) for v in range(k)]
    else:
        r = float(cfg.traverse_range)
        values = torch.linspace(-r, r, cfg.steps).tolist()
    rows = max(1, cfg.n // len(values))
    z = G.sample_z(rows, device=device, generator=gen, truncation=cfg.truncation)
    z = torch.stack([G.set_code(z, cfg.code, v) for v in values], dim=1).flatten(0, 1)
    c = _labels(G, rows, device, cfg.class_idx)
    c = c.repeat_interleave(len(values)) if c is not None else None
    return z, c, len(values)


@torch.no_grad()
def generate(
    G, z: torch.Tensor, c: torch.Tensor | None, chunk: int = 256, **g_kwargs
) -> torch.Tensor:
    cs = c.split(chunk) if c is not None else [None] * len(z.split(chunk))
    return torch.cat([G(zi, ci, **g_kwargs) for zi, ci in zip(z.split(chunk), cs)])


def check_mixing_mode(cfg: DictConfig) -> None:
    if not cfg.mixing:
        return
    if cfg.per_image or cfg.interpolate or cfg.traverse:
        raise ConfigError("mixing=true draws its own grid; drop per_image / interpolate / traverse")
    if cfg.mixing_columns < 1 or cfg.mixing_rows < 1:
        raise ConfigError(
            f"mixing_columns and mixing_rows must be >= 1, got {cfg.mixing_columns}, {cfg.mixing_rows}"
        )


# figures only some generators draw: ``<name>=true`` asks G.figure(name, ...) for it;
# the hint names a model that draws it, for the one-line refusal of the others
MODEL_FIGURES = {"mixing": "a style-based generator (model=stylegan)"}


def model_figure(G, name: str, cfg: DictConfig, gen, device) -> tuple[torch.Tensor, int]:
    """A figure of the generator's own (``G.figure``, e.g. StyleGAN's style mixing,
    Karras et al. 2019, Fig. 3): (images, per row)."""
    method = getattr(G, "figure", None)
    drawn = method(name, cfg, device=device, generator=gen) if method is not None else None
    if drawn is None:
        raise ConfigError(f"{name}=true needs {MODEL_FIGURES.get(name, 'another model')}")
    return drawn


def sample(cfg: DictConfig, default_out: Path) -> list[Path]:
    check_settings(cfg)
    rejection = RejectionSettings.from_config(cfg.rejection)
    if cfg.out:  # before any work: a read-only place, or a file where a folder should be
        fsio.check_writable(cfg.out, OUT_ELSEWHERE, folder=bool(cfg.per_image))
    device = resolve_device(cfg.device)
    path, G, train_cfg, state = load_generator_with_path(cfg.ckpt, device, use_ema=cfg.use_ema)
    check_model_modes(cfg, G)
    check_count(cfg, state["data"]["shape"])
    gen = torch.Generator().manual_seed(int(cfg.seed))
    torch.manual_seed(int(cfg.seed))  # for noise drawn inside G (StyleGAN's per-pixel noise)
    trunc, g_kwargs = truncation_args(G, cfg.truncation)  # in z, or in W (StyleGAN)
    out = Path(cfg.out) if cfg.out else default_out

    for name in MODEL_FIGURES:
        if cfg[name]:
            return [_write_grid(*model_figure(G, name, cfg, gen, device), out)]

    if _arithmetic(cfg):  # the grid's latents, as the plain grid below draws them
        from ganrun.sampling import arithmetic

        z = G.sample_z(cfg.n, device=device, generator=gen, truncation=trunc)
        picture = arithmetic.figure(G, cfg, z, lambda zs: generate(G, zs, None, **g_kwargs), gen)
        return [_write_picture(picture, out)]

    if cfg.traverse:
        z, c, cols = traversal_latents(G, cfg, gen, device)
        return [_write_grid(generate(G, z, c), cols, out)]

    if cfg.interpolate:
        rows = max(1, cfg.n // cfg.steps)
        za = G.sample_z(rows, device=device, generator=gen, truncation=trunc)
        zb = G.sample_z(rows, device=device, generator=gen, truncation=trunc)
        t = torch.linspace(0, 1, cfg.steps, device=device)
        z = viz.slerp(za, zb, t).reshape(rows * cfg.steps, -1)
        if G.z_dist == "uniform":
            z = z.clamp(-1, 1)  # keep the path inside the prior's support
        c = _labels(G, rows, device, cfg.class_idx)
        c = c.repeat_interleave(cfg.steps) if c is not None else None
        x = generate(G, z, c, **g_kwargs)
        return [_write_grid(x, cfg.steps, out)]

    n, nrow, c = cfg.n, cfg.nrow, _labels(G, cfg.n, device, cfg.class_idx)
    if c is not None and cfg.class_idx is None and not cfg.per_image:
        # one row per class; with fewer samples than classes, sample i is of class i
        nrow, n, c = class_rows(G, cfg.n, device) or (nrow, n, c)
    if rejection.enabled:
        if g_kwargs:
            raise ConfigError(
                "rejection sampling draws z itself; truncation in W (stylegan) is not "
                "supported with it: drop truncation or rejection.method"
            )
        x = _rejection_samples(cfg, rejection, G, train_cfg, state, path, device, trunc)
    else:
        z = G.sample_z(n, device=device, generator=gen, truncation=trunc)
        x = generate(G, z, c, **g_kwargs)
    if cfg.per_image:
        if x.dim() != 4:
            raise ConfigError(
                "per_image=true needs an image model; this checkpoint generates 2-D points"
            )
        folder = Path(cfg.out) if cfg.out else default_out.with_suffix("")
        fsio.make_dirs(folder, OUT_ELSEWHERE)
        paths = []
        for i, img in enumerate(x):  # each complete or absent; a failure names its file
            p = folder / f"{i:06d}.png"
            fsio.write_image(viz.image_grid(img.unsqueeze(0), nrow=1, padding=0), p, OUT_ELSEWHERE)
            paths.append(p)
        print(f"wrote {len(paths)} images to {folder}")
        return paths
    if cfg.numbered:  # tile i is latent i of arithmetic.* with this seed= and n=
        from ganrun.sampling import arithmetic

        return [_write_picture(arithmetic.numbered_picture(x, nrow), out)]
    centers = _centers(train_cfg) if x.dim() == 2 else None
    return [_write_grid(x, nrow, out, centers)]


def _rejection_samples(cfg, settings, G, train_cfg, state, path, device, truncation):
    """cfg.n samples that DRS accepts (ganrun.rejection); fits or loads the estimator
    kept beside the checkpoint file ``path``."""
    from ganrun import rejection as drs

    sampler = drs.prepare(
        settings,
        G,
        train_cfg,
        state,
        build_dataset(train_cfg),
        device,
        checkpoint=path,
        generator=generator_key(state, cfg.use_ema),
    )
    x = sampler.generate(cfg.n, seed=int(cfg.seed), batch_size=settings.batch_size,
                         truncation=truncation)  # fmt: skip
    log.info("rejection: kept %d of %d candidates", cfg.n, sampler.last["drawn"])
    return x


def _centers(train_cfg):
    """The mixture's component centres, drawn on 2-D scatter plots."""
    try:
        return getattr(build_dataset(train_cfg), "centers", None)
    except GanrunError:
        return None


def _write_grid(x: torch.Tensor, nrow: int, out: Path, centers=None) -> Path:
    return _write_picture(viz.picture(x, nrow=nrow, centers=centers), out)


def _write_picture(picture: torch.Tensor, out: Path) -> Path:
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"out={out} should name a .png (or .jpg) file")
    fsio.write_image(picture, out, OUT_ELSEWHERE)
    print(f"wrote {out}")
    return out


@hydra.main(config_path=str(conf_dir()), config_name="sample", version_base="1.3")
def main(cfg: DictConfig):
    default_out = Path(HydraConfig.get().runtime.output_dir) / "samples.png"
    report_errors(lambda: sample(cfg, default_out))


register_configs()

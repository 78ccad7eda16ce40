"""Latent vector arithmetic — Radford, Metz & Chintala 2015 (arXiv:1511.06434),
Sec. 6.3 and Fig. 7 ("smiling woman - neutral woman + neutral man").

The user picks exemplars from a numbered grid::

    ganrun sample ckpt=<run> seed=3 n=64 numbered=true            # tiles 0..63
    ganrun sample ckpt=<run> seed=3 n=64 arithmetic.a=[4,17,22] arithmetic.b=[1,9,30] \\
        arithmetic.c=[5,6,40]

Both commands draw the same n latents (``G.sample_z(n)`` from a generator seeded
with ``seed``, and ``truncation`` if given), so tile i of the numbered grid is
latent i of the arithmetic. As in the paper, each group's z vectors are averaged
("for each column, the Z vectors of samples are averaged"; the paper averages
three exemplars, any number >= 1 works here) and Y = mean(A) - mean(B) + mean(C)
is fed to G. The paper adds "uniform noise sampled with scale +-0.25" to Y for
its 8 surrounding samples: ``arithmetic.noise`` (default 8) such samples with
``arithmetic.noise_scale`` (default 0.25).

The figure has one row per group — its exemplars (re-rendered from the grid's
latents, so they are the grid's tiles), then the image of the group's mean z —
and a result row: Y's image in the means' column, the noisy variants before it.
The means' column reads top to bottom as the sum: A, -B, +C, = Y.

Y and its noisy variants are not clamped to the prior's support (with z ~ U(-1, 1),
A - B + C can leave the cube): the paper does not clamp either.

Only unconditional image models whose whole input is z: class-conditional models
(the class would have to be averaged too) and models with latent codes (InfoGAN:
the average of one-hot codes is not a code) are refused with one line.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig

from ganrun.config import ArithmeticConfig
from ganrun.errors import ConfigError

GROUPS = ("a", "b", "c")
SIGNS = {"a": "A", "b": "-B", "c": "+C"}
MIN_TILE = 48  # pixels: smaller samples (MNIST's 28) are enlarged so the numbers are legible


# --------------------------------------------------------------------------- settings
def groups(node: DictConfig | dict) -> dict[str, list[int]]:
    return {g: [int(i) for i in (node.get(g) or [])] for g in GROUPS}


def enabled(node: DictConfig | dict | None) -> bool:
    """Whether ``arithmetic.*`` asks for arithmetic (any group given)."""
    return node is not None and any(groups(node).values())


def check_settings(cfg: DictConfig) -> None:
    """``arithmetic.*`` and ``numbered`` against the other settings of ganrun sample
    (no checkpoint needed: the preflight runs this)."""
    node = cfg.arithmetic
    others = [k for k in ("per_image", "interpolate", "traverse", "mixing") if cfg[k]]
    if cfg.rejection.method is not None:
        others.append("rejection.method")
    if cfg.numbered and others:
        raise ConfigError(
            "numbered=true numbers the tiles of a plain grid (the latents arithmetic.* reads); "
            f"drop {' / '.join(others)}"
        )
    if not enabled(node):
        default = ArithmeticConfig()
        if (node.noise, node.noise_scale) != (default.noise, default.noise_scale):
            raise ConfigError(
                "arithmetic.noise / noise_scale need exemplars: give arithmetic.a=[...] "
                "arithmetic.b=[...] arithmetic.c=[...] (tile numbers of numbered=true)"
            )
        return
    if cfg.numbered:
        raise ConfigError(
            "numbered=true draws the grid to pick exemplars from, arithmetic.* the result: "
            "run them one after the other (same seed= and n=)"
        )
    if others:
        raise ConfigError(f"arithmetic.* draws its own figure; drop {' / '.join(others)}")
    if cfg.class_idx is not None:
        raise ConfigError("arithmetic works on unconditional models; drop class_idx")
    picked = groups(node)
    empty = [g for g in GROUPS if not picked[g]]
    if empty:
        raise ConfigError(
            f"arithmetic.{empty[0]} is empty: A - B + C needs tiles in each of arithmetic.a, "
            "arithmetic.b and arithmetic.c, e.g. arithmetic.a=[4,17,22]"
        )
    for g in GROUPS:
        bad = [i for i in picked[g] if not 0 <= i < cfg.n]
        if bad:
            raise ConfigError(
                f"arithmetic.{g} names tile {bad[0]}, but the grid of n={cfg.n} has tiles "
                f"0..{cfg.n - 1}; use the seed= and n= of the numbered grid you picked from"
            )
    if node.noise < 0:
        raise ConfigError(f"arithmetic.noise must be >= 0 (noisy results), got {node.noise}")
    if not node.noise_scale >= 0:
        raise ConfigError(f"arithmetic.noise_scale must be >= 0, got {node.noise_scale}")


def check_model(images: bool, num_classes: int, has_codes: bool, arithmetic: bool) -> None:
    """What numbered grids (``arithmetic=False``) and arithmetic need of the model."""
    what = "arithmetic" if arithmetic else "numbered=true"
    if not images:
        raise ConfigError(f"{what} draws images; this checkpoint generates 2-D points")
    if not arithmetic:
        return
    if num_classes:
        raise ConfigError(
            "arithmetic works on unconditional models; this one is class-conditional "
            "(its samples depend on a label as well as z)"
        )
    if has_codes:
        raise ConfigError(
            "arithmetic averages whole latents; this model has latent codes (infogan), whose "
            "averages are no codes: use traverse=true to vary a code"
        )


def check_generator(G: Any, data_shape, arithmetic: bool) -> None:
    codes = getattr(G, "codes", None)
    check_model(
        len(tuple(data_shape)) == 3,
        int(getattr(G, "num_classes", 0) or 0),
        bool(codes is not None and codes()),
        arithmetic,
    )


def check_stored_model(train_cfg: DictConfig, data: dict, arithmetic: bool) -> None:
    """``check_generator`` from a checkpoint's config and data, without building G
    (the preflight)."""
    from hydra.utils import get_class

    from ganrun.build import takes_labels

    node = train_cfg.model.G
    classes = int(data.get("num_classes", 0) or 0) if takes_labels(node) else 0
    has_codes = hasattr(get_class(node._target_), "codes")
    check_model(len(tuple(data.get("shape") or ())) == 3, classes, has_codes, arithmetic)


# --------------------------------------------------------------------------- the arithmetic
def combine(z: torch.Tensor, picked: dict[str, list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(the three group means (3, D), Y = mean(A) - mean(B) + mean(C) (D,)) from the
    grid's latents ``z`` (n, D)."""
    means = torch.stack([z[picked[g]].mean(0) for g in GROUPS])
    return means, means[0] - means[1] + means[2]


def noisy(y: torch.Tensor, count: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """``count`` copies of Y plus U(-scale, scale) noise in every dimension (Fig. 7)."""
    u = torch.rand(count, y.shape[0], generator=generator, device=generator.device)
    return y + (u.to(y.device, y.dtype) * 2 - 1) * scale


def layout(
    grid: torch.Tensor,
    picked: dict[str, list[int]],
    means: torch.Tensor,
    results: torch.Tensor,
) -> tuple[torch.Tensor, int, list[str], list[str]]:
    """The figure's tiles: (images (rows * columns, C, H, W) with white blanks,
    columns, row labels, tile captions). ``results`` is Y's image then the noisy ones."""
    width = max(max(len(v) for v in picked.values()), len(results) - 1)
    cols = width + 2  # exemplars (or noisy results), a blank gap, the means' column
    blank = torch.ones_like(grid[0])
    tiles, captions = [], []
    for k, g in enumerate(GROUPS):
        row = [grid[i] for i in picked[g]]
        tiles += row + [blank] * (cols - 1 - len(row)) + [means[k]]
        captions += [str(i) for i in picked[g]] + [""] * (cols - 1 - len(row)) + ["mean"]
    noise = list(results[1:])
    tiles += noise + [blank] * (cols - 1 - len(noise)) + [results[0]]
    captions += ["+noise"] * len(noise) + [""] * (cols - 1 - len(noise)) + ["A-B+C"]
    return torch.stack(tiles), cols, ["A", "-B", "+C", "="], captions


@torch.no_grad()
def figure(G, cfg: DictConfig, z: torch.Tensor, render, generator: torch.Generator) -> torch.Tensor:
    """The arithmetic picture (C, H, W) in [0, 1] from the grid's latents ``z``;
    ``render(latents) -> images`` runs G as the sample command does."""
    picked = groups(cfg.arithmetic)
    grid = render(z)  # the numbered grid's own images, tile for tile
    means, y = combine(z, picked)
    extra = noisy(y, int(cfg.arithmetic.noise), float(cfg.arithmetic.noise_scale), generator)
    images = render(torch.cat([means, y[None], extra]))
    tiles, cols, rows, captions = layout(grid, picked, images[:3], images[3:])
    return captioned_grid(tiles, cols, captions, row_labels=rows)


# --------------------------------------------------------------------------- drawing
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1)
    except TypeError:
        return ImageFont.load_default()


def _text_size(draw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def captioned_grid(
    images: torch.Tensor,
    nrow: int,
    captions: list[str],
    row_labels: list[str] | None = None,
    padding: int = 2,
) -> torch.Tensor:
    """A grid of ``images`` ((N, C, H, W) in [-1, 1], ``nrow`` per row) with each
    tile's caption written in a white band above it and, optionally, a label left
    of each row; (3, H', W') in [0, 1]. Tiles under ``MIN_TILE`` pixels are enlarged
    (nearest neighbour) so that the text fits."""
    from PIL import Image, ImageDraw
    from torchvision.transforms.functional import pil_to_tensor

    from ganrun import viz

    x = images.detach().float().cpu()
    side = max(x.shape[-2:])
    if side < MIN_TILE:
        x = torch.nn.functional.interpolate(x, scale_factor=math.ceil(MIN_TILE / side))
    n, _, h, w = x.shape
    font_px = max(9, min(16, w // 4))
    font = _font(font_px)
    band = font_px + 4
    framed = torch.cat([torch.ones(n, x.shape[1], band, w), x], dim=2)  # white band on top
    grid = viz.image_grid(framed, nrow=nrow, padding=padding)
    if grid.shape[0] == 1:
        grid = grid.expand(3, -1, -1)
    img = Image.fromarray(grid.mul(255).add(0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(img)
    margin = 0
    if row_labels:
        margin = max(_text_size(draw, t, font)[0] for t in row_labels) + 3 * padding
    canvas = Image.new("RGB", (img.width + margin, img.height), (255, 255, 255))
    canvas.paste(img, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    step_x, step_y = w + padding, h + band + padding
    for i, text in enumerate(captions):
        if not text:
            continue
        r, c = divmod(i, nrow)
        tw, _ = _text_size(draw, text, font)
        x0 = margin + padding + c * step_x + max(0, (w - tw) // 2)
        draw.text((x0, padding + r * step_y + 1), text, fill=(0, 0, 0), font=font)
    for r, text in enumerate(row_labels or []):
        _, th = _text_size(draw, text, font)
        y0 = padding + r * step_y + band + (h - th) // 2
        draw.text((padding, y0), text, fill=(0, 0, 0), font=font)
    return pil_to_tensor(canvas).float() / 255


def numbered_picture(x: torch.Tensor, nrow: int) -> torch.Tensor:
    """The plain grid of ``x`` with every tile's index (0-based, row by row) above it."""
    return captioned_grid(x, nrow, [str(i) for i in range(x.shape[0])])

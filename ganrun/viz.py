"""Turning samples into pictures: image grids, and scatter plots for 2-D points."""

from __future__ import annotations

import math

import torch
from torchvision.utils import make_grid


def image_grid(x: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (3 or 1, H', W') float grid in [0, 1]."""
    x = x.detach().float().cpu().clamp(-1, 1).add(1).div(2)
    return make_grid(x, nrow=nrow, padding=padding, pad_value=1.0)


def _nice_step(span: float, target: int = 5) -> float:
    """A tick spacing of 1, 2 or 5 times a power of ten giving about ``target`` ticks."""
    raw = max(span, 1e-12) / target
    base = 10.0 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw * 0.99)  # 0.99: rounding


def _tick_label(v: float, spacing: float) -> str:
    digits = max(0, -math.floor(math.log10(spacing))) if spacing < 1 else 0
    text = f"{v:.{digits}f}"
    return "0" if float(text) == 0 else text  # never "-0"


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1 with FreeType
    except TypeError:  # older Pillow: its fixed bitmap font
        return ImageFont.load_default()


def scatter(
    points: torch.Tensor,
    centers: torch.Tensor | None = None,
    size: int = 256,
    extent: float | None = None,
    step: int | None = None,
) -> torch.Tensor:
    """Rasterize 2-D points (N, 2) into a (3, size, size) image in [0, 1]: samples
    in blue, the data's component centres (if given) as red crosses, and (at ``size``
    >= 128) axes with ticks, the step number and how many samples fall outside.

    The plotted range is [-extent, extent] on both axes: 1.25 x the centres' largest
    coordinate, a property of the dataset alone, so successive frames of a run share
    one scale (without centres it follows the points, rounded up to a tick)."""
    pts = points.detach().float().cpu()
    ref = centers.float().cpu() if centers is not None else pts
    if extent is None:
        extent = float(ref.abs().max()) * 1.25 + 1e-6 if ref.numel() else 1.0
        if centers is None:  # round up past a tick so that small changes keep the scale
            spacing = _nice_step(2 * extent)
            extent = (math.ceil(extent / spacing) + 0.25) * spacing
    spacing = _nice_step(2 * extent)
    axes = size >= 128
    font_px = max(9, size // 22)
    left, right, top, bottom = (
        (4 * font_px, font_px // 2 + 2, font_px + 8, font_px + 9) if axes else (0, 0, 0, 0)
    )
    side = min(size - left - right, size - top - bottom)
    img = torch.ones(3, side, side)

    def to_px(p):
        return ((p + extent) / (2 * extent) * (side - 1)).round().long()

    ticks = [k * spacing for k in range(-int(extent // spacing), int(extent // spacing) + 1)]
    for v in ticks if axes else (-extent, 0.0, extent):  # light grid
        i = int(to_px(torch.tensor(float(v))))
        img[:, side - 1 - i, :] = 0.9
        img[:, :, i] = 0.9
    px = to_px(pts)
    keep = (px >= 0).all(1) & (px < side).all(1)
    outside = int((~keep).sum())
    px = px[keep]
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            xs = (px[:, 0] + dx).clamp(0, side - 1)
            ys = (side - 1 - px[:, 1] + dy).clamp(0, side - 1)
            img[0, ys, xs] = 0.1
            img[1, ys, xs] = 0.3
            img[2, ys, xs] = 0.9
    if centers is not None:
        for c in to_px(ref):
            x, y = int(c[0]), side - 1 - int(c[1])
            for d in range(-4, 5):
                for xx, yy in ((x + d, y), (x, y + d)):
                    if 0 <= xx < side and 0 <= yy < side:
                        img[:, yy, xx] = torch.tensor([0.9, 0.1, 0.1])
    if not axes:
        return img
    return _framed(img, size, (left, top), ticks, spacing, to_px, step, outside, _font(font_px))


def _framed(plot, size, origin, ticks, spacing, to_px, step, outside, font) -> torch.Tensor:
    """The plot on a white (3, size, size) canvas with a frame, tick marks and labels
    on both axes, and the step number and the count of samples outside above it."""
    import numpy as np
    from PIL import Image, ImageDraw

    left, top = origin
    side = plot.shape[-1]
    canvas = Image.new("RGB", (size, size), "white")
    array = plot.permute(1, 2, 0).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
    canvas.paste(Image.fromarray(np.ascontiguousarray(array)), (left, top))
    draw = ImageDraw.Draw(canvas)
    ink = (60, 60, 60)
    draw.rectangle((left - 1, top - 1, left + side, top + side), outline=ink)
    for v in ticks:
        i = int(to_px(torch.tensor(float(v))))
        label = _tick_label(v, spacing)
        x, y = left + i, top + side - 1 - i
        draw.line((x, top + side, x, top + side + 3), fill=ink)  # x axis
        draw.text((x, top + side + 4), label, fill=ink, font=font, anchor="mt")
        draw.line((left - 4, y, left - 1, y), fill=ink)  # y axis
        draw.text((left - 6, y), label, fill=ink, font=font, anchor="rm")
    if step is not None:
        draw.text((left, top - 3), f"step {step}", fill=(0, 0, 0), font=font, anchor="ls")
    if outside:
        draw.text(
            (left + side, top - 3), f"{outside} outside", fill=(170, 30, 30), font=font, anchor="rs"
        )
    out = torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float().div(255)
    return out


def picture(
    samples: torch.Tensor,
    nrow: int = 8,
    centers: torch.Tensor | None = None,
    step: int | None = None,
) -> torch.Tensor:
    """A (C, H, W) picture in [0, 1] of a batch of samples of either kind; ``step``
    labels a scatter plot (image grids carry none)."""
    if samples.dim() == 2:
        return scatter(samples, centers, step=step)
    return image_grid(samples, nrow=nrow)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985; White 2016 for GAN latents).

    a, b: (N, D); t: (T,) in [0, 1]. Returns (N, T, D). Falls back to linear
    interpolation where a and b are (nearly) parallel.
    """
    a_n = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b_n = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1.0, 1.0)).unsqueeze(1)  # (N, 1)
    so = torch.sin(omega)
    t = t.view(1, -1, 1)
    omega, so = omega.unsqueeze(1), so.unsqueeze(1)
    near = so.abs() < 1e-6
    w_a = torch.where(
        near, 1 - t, torch.sin((1 - t) * omega) / torch.where(near, torch.ones_like(so), so)
    )
    w_b = torch.where(near, t, torch.sin(t * omega) / torch.where(near, torch.ones_like(so), so))
    return w_a * a.unsqueeze(1) + w_b * b.unsqueeze(1)


def grid_rows(n: int, nrow: int) -> int:
    return math.ceil(n / max(1, nrow))

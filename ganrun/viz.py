"""Turning samples into pictures: image grids, and scatter plots for 2-D points."""

from __future__ import annotations

import math

import torch
from torchvision.utils import make_grid


def image_grid(x: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (3 or 1, H', W') float grid in [0, 1]."""
    x = x.detach().float().cpu().clamp(-1, 1).add(1).div(2)
    return make_grid(x, nrow=nrow, padding=padding, pad_value=1.0)


def scatter(
    points: torch.Tensor,
    centers: torch.Tensor | None = None,
    size: int = 256,
    extent: float | None = None,
) -> torch.Tensor:
    """Rasterize 2-D points (N, 2) into a (3, size, size) image in [0, 1]:
    samples in blue, the data's component centres (if given) as red crosses."""
    pts = points.detach().float().cpu()
    ref = centers.float().cpu() if centers is not None else pts
    if extent is None:
        extent = float(ref.abs().max()) * 1.25 + 1e-6 if ref.numel() else 1.0
    img = torch.ones(3, size, size)

    def to_px(p):
        return ((p + extent) / (2 * extent) * (size - 1)).round().long()

    for i in (0, size // 2, size - 1):  # light axes frame
        img[:, i, :] = 0.9
        img[:, :, i] = 0.9
    px = to_px(pts)
    keep = (px >= 0).all(1) & (px < size).all(1)
    px = px[keep]
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            xs = (px[:, 0] + dx).clamp(0, size - 1)
            ys = (size - 1 - px[:, 1] + dy).clamp(0, size - 1)
            img[0, ys, xs] = 0.1
            img[1, ys, xs] = 0.3
            img[2, ys, xs] = 0.9
    if centers is not None:
        for c in to_px(ref):
            x, y = int(c[0]), size - 1 - int(c[1])
            for d in range(-4, 5):
                for xx, yy in ((x + d, y), (x, y + d)):
                    if 0 <= xx < size and 0 <= yy < size:
                        img[:, yy, xx] = torch.tensor([0.9, 0.1, 0.1])
    return img


def picture(
    samples: torch.Tensor, nrow: int = 8, centers: torch.Tensor | None = None
) -> torch.Tensor:
    """A (C, H, W) picture in [0, 1] of a batch of samples of either kind."""
    if samples.dim() == 2:
        return scatter(samples, centers)
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

"""Differentiable augmentation of D's inputs (the ``augment`` config group).

DiffAugment — Zhao, Liu, Lin, Zhu & Han 2020, "Differentiable Augmentation for
Data-Efficient GAN Training" (arXiv:2006.10738), Sec. 3: the same random,
differentiable transformation T is applied to every image D sees, real and
generated, in D's step *and* in G's step (D(T(x)), D(T(G(z)))), so D cannot
memorise a small training set while G still learns the untransformed data
(T is applied to G's output inside the graph, Eq. 3–4). Policies, as in the
paper's Sec. 3 and its code's defaults:

* ``translation``: shift each image by a random integer offset of up to 1/8 of
  its size in each direction, filling the vacated pixels with 0;
* ``cutout``: set a random square of half the image size (clipped at the border)
  to 0 (DeVries & Taylor 2017);
* ``color``: random brightness (add U(-0.5, 0.5)), saturation (scale each pixel's
  deviation from its channel mean by U(0, 2)) and contrast (scale the deviation
  from the image mean by U(0.5, 1.5)).

Every random draw is per image, from torch's global RNG on the images' device,
so a resumed run (whose checkpoint holds the RNG states) replays it exactly.
Regularizers see the augmented images, i.e. what D sees: R1 penalises D's
gradient at T(x), the gradient penalty interpolates between T(x) and T(G(z)).
"""

from __future__ import annotations

import torch

from ganrun.errors import ConfigError

POLICIES = ("color", "translation", "cutout")


class DiffAugment:
    def __init__(
        self,
        policy: list[str] = ("translation", "cutout"),
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ):
        policy = [str(p) for p in policy]
        bad = [p for p in policy if p not in POLICIES]
        if bad or not policy or len(set(policy)) != len(policy):
            raise ConfigError(
                f"augment.policy={policy} is not valid; give one or more of {', '.join(POLICIES)}"
            )
        for key, r in (("translation_ratio", translation_ratio), ("cutout_ratio", cutout_ratio)):
            if not 0.0 < r < 1.0:
                raise ConfigError(f"augment.{key} must be in (0, 1), got {r}")
        self.policy = policy
        self.translation_ratio, self.cutout_ratio = float(translation_ratio), float(cutout_ratio)

    def check_data(self, kind: str) -> None:
        if kind != "image":
            raise ConfigError(
                "augment=diffaugment transforms images; this dataset gives 2-D points"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for p in self.policy:
            x = getattr(self, p)(x)
        return x

    # ---------------------------------------------------------------- policies
    @staticmethod
    def color(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        r = lambda: torch.rand(n, 1, 1, 1, device=x.device, dtype=x.dtype)  # noqa: E731
        x = x + (r() - 0.5)  # brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (r() * 2) + mean  # saturation (a no-op on one channel)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (r() + 0.5) + mean  # contrast

    def translation(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        sh, sw = int(h * self.translation_ratio + 0.5), int(w * self.translation_ratio + 0.5)
        dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
        dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # the source pixel of (i, j)
        cols = torch.arange(w, device=x.device).view(1, 1, w) - dx
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w)
        moved = x.flatten(2).gather(2, index.expand(n, c, h * w)).view(n, c, h, w)
        return moved * inside.unsqueeze(1).to(x.dtype)

    def cutout(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        sh, sw = int(h * self.cutout_ratio + 0.5), int(w * self.cutout_ratio + 0.5)
        top = torch.randint(0, h + 1 - sh % 2, (n, 1, 1), device=x.device) - sh // 2
        left = torch.randint(0, w + 1 - sw % 2, (n, 1, 1), device=x.device) - sw // 2
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        hole = (rows >= top) & (rows < top + sh) & (cols >= left) & (cols < left + sw)
        return x * (~hole).unsqueeze(1).to(x.dtype)

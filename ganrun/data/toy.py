"""2-D Gaussian mixtures used to measure mode collapse.

``ring``: 8 components on the unit circle, sigma 0.01; ``grid``: 25 on
{-4,-2,0,2,4}^2, sigma 0.05 (the settings of PacGAN, Lin et al. 2018, Sec. 5.1,
after VEEGAN, Srivastava et al. 2017). Components are equally likely.
"""

from __future__ import annotations

import math

import torch

from ganrun.data.base import PointSource
from ganrun.errors import ConfigError


class Mixture(PointSource):
    def __init__(self, centers: torch.Tensor, std: float):
        if not std > 0:
            raise ConfigError(f"dataset.std must be > 0, got {std}")
        self.centers = centers.float()
        self.std = float(std)

    @property
    def data_shape(self):
        return (int(self.centers.shape[1]),)

    @property
    def n_modes(self) -> int:
        return int(self.centers.shape[0])

    def sample(self, n, generator):
        k = torch.randint(0, self.n_modes, (n,), generator=generator)
        noise = torch.randn(n, self.centers.shape[1], generator=generator)
        return self.centers[k] + self.std * noise, k


class Ring(Mixture):
    def __init__(self, n_modes: int = 8, radius: float = 1.0, std: float = 0.01):
        if n_modes < 1:
            raise ConfigError(f"dataset.n_modes must be >= 1, got {n_modes}")
        angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
        centers = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=1)
        super().__init__(centers, std)

    def describe(self):
        return f"ring of {self.n_modes} Gaussians (sigma {self.std})"


class Grid(Mixture):
    def __init__(self, size: int = 5, spacing: float = 2.0, std: float = 0.05):
        if size < 1:
            raise ConfigError(f"dataset.size must be >= 1, got {size}")
        axis = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2) * spacing
        gx, gy = torch.meshgrid(axis, axis, indexing="ij")
        super().__init__(torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), std)

    def describe(self):
        return f"grid of {self.n_modes} Gaussians (sigma {self.std})"

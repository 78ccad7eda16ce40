"""Random images held in memory: a data source with no I/O, for benchmarks."""

from __future__ import annotations

import torch

from ganrun.data.base import ArraySource
from ganrun.errors import ConfigError


class Fake(ArraySource):
    def __init__(
        self, resolution: int = 64, channels: int = 3, size: int = 2048, num_classes: int = 0
    ):
        super().__init__(resolution, channels, labels=num_classes > 0)
        if size < 1 or num_classes < 0:
            raise ConfigError(
                f"dataset.size must be >= 1 and num_classes >= 0, got size={size}, num_classes={num_classes}"
            )
        self.size, self._num_classes = int(size), int(num_classes)

    @property
    def num_classes(self):
        return self._num_classes

    def _load(self):
        g = torch.Generator().manual_seed(1234)
        x = torch.randint(
            0,
            256,
            (self.size, self.channels, self.resolution, self.resolution),
            generator=g,
            dtype=torch.uint8,
        )
        y = (
            torch.randint(0, max(1, self._num_classes), (self.size,), generator=g)
            if self._num_classes
            else None
        )
        return x, y

    def describe(self):
        return (
            f"fake ({self.size} random {self.channels}x{self.resolution}x{self.resolution} images)"
        )

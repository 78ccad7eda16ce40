"""Stacked MNIST: three random digits as the R, G and B channels -> 1,000 modes.

The mode-collapse benchmark of Metz et al. 2017 (Unrolled GANs, Sec. 3.3.1), used
by VEEGAN (Srivastava et al. 2017, Sec. 5) and PacGAN (Lin et al. 2018, Sec. 5.2):
each image stacks three MNIST digits drawn independently and uniformly, so the
1,000 digit triples (a, b, c) are equally likely; mode index = 100a + 10b + c.

Digits come from the 5,000 embedded MNIST digits (ganrun.data.embedded; the
``train`` split of 4,500 by default), not from the 70,000 of full MNIST.

Sampling: like the 2-D mixtures (ganrun.data.base.PointSource), batch i draws
fresh triples with a generator seeded by (seed, i), so streams are reproducible
and a resumed run sees exactly the batches of an uninterrupted one. PacGAN's code
instead pre-draws a fixed set of 128,000 triples and makes epochs over it; with
4,500 digits there are 4,500^3 possible images, so fresh draws cost nothing in
memory and sample the same distribution (every triple equally likely).
"""

from __future__ import annotations

import torch

from ganrun.data import embedded
from ganrun.data.base import DataSource, _mix, check_image_args, resize_uint8, to_unit_range
from ganrun.errors import ConfigError

N_MODES = 1000


def mode_index(digits: torch.Tensor) -> torch.Tensor:
    """(N, 3) digits (R, G, B) -> (N,) mode index 100a + 10b + c in [0, 1000)."""
    return digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]


class StackedMNIST(DataSource):
    kind = "image"
    n_modes = N_MODES

    def __init__(self, resolution: int = 28, split: str = "train", labels: bool = False):
        check_image_args(resolution, 3)
        if split not in embedded.SPLITS:
            raise ConfigError(
                f"dataset.split={split!r} is not valid; choose from {', '.join(embedded.SPLITS)}"
            )
        self.resolution, self.split, self.labels = int(resolution), split, bool(labels)
        self._digits: torch.Tensor | None = None  # uint8 (N, 1, H, W)
        self._labels: torch.Tensor | None = None  # int64 (N,)

    @property
    def data_shape(self):
        return (3, self.resolution, self.resolution)

    @property
    def num_classes(self) -> int:
        # labels=true: the mode index as a class (for conditional models); off by
        # default because the benchmark is unconditional
        return N_MODES if self.labels else 0

    def check(self) -> None:
        embedded.csv_path()

    def digits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single digits: uint8 (N, 1, res, res) and their labels (N,)."""
        if self._digits is None:
            images, labels = embedded.read_all()
            idx = embedded.split_indices(labels)[self.split]
            x = torch.from_numpy(images[idx]).unsqueeze(1)
            self._digits = resize_uint8(x, self.resolution).contiguous()
            self._labels = torch.from_numpy(labels[idx])
        return self._digits, self._labels

    def prepare(self) -> None:
        self.digits()

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` stacked images in [-1, 1] (n, 3, res, res) and their mode indices (n,)."""
        x, y = self.digits()
        idx = torch.randint(0, x.shape[0], (n, 3), generator=generator)
        images = x[idx.reshape(-1)].reshape(n, 3, self.resolution, self.resolution)
        return to_unit_range(images), mode_index(y[idx])

    def batches(self, batch_size, seed, start=0, device="cpu", num_workers=0):
        x, y = self.digits()
        x, y = x.to(device), y.to(device)
        i = start
        while True:
            g = torch.Generator().manual_seed(_mix(seed, i, 0x57AC))
            idx = torch.randint(0, x.shape[0], (batch_size, 3), generator=g).to(device)
            images = x.index_select(0, idx.reshape(-1)).reshape(batch_size, 3, *x.shape[2:])
            i += 1
            yield to_unit_range(images), (mode_index(y[idx]) if self.labels else None)

    def describe(self) -> str:
        return (
            f"stacked MNIST ({self.split} digits of embedded MNIST as RGB, {N_MODES} modes, "
            f"{self.resolution}px)"
        )

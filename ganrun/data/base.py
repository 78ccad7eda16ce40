"""DataSource kinds: in-memory arrays, file streams, and sampled 2-D mixtures."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ganrun.errors import ConfigError, DataError

Batch = tuple[torch.Tensor, "torch.Tensor | None"]


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers (for per-epoch / per-batch generators)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(_mix(seed, epoch))
    return torch.randperm(n, generator=g)


class IndexStream:
    """Batch ``i`` of a shuffled pass over ``n`` items, epoch after epoch
    (a fresh permutation per epoch, last partial batch dropped)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0):
        if batch_size > n:
            raise DataError(
                f"the dataset has {n} samples, fewer than trainer.batch_size={batch_size}"
            )
        self.n, self.batch_size, self.seed, self.i = n, batch_size, seed, start
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        epoch, k = divmod(self.i, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, epoch_permutation(self.n, self.seed, epoch)
        self.i += 1
        return self._perm[k * self.batch_size : (k + 1) * self.batch_size]


def check_image_args(resolution: int, channels: int) -> None:
    if resolution < 4:
        raise ConfigError(f"dataset.resolution must be >= 4, got {resolution}")
    if channels not in (1, 3):
        raise ConfigError(f"dataset.channels must be 1 or 3, got {channels}")


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def resize_uint8(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize (N, C, H, W) uint8 images to a square side (bilinear, antialiased)."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    out = []
    for chunk in x.split(4096):
        y = F.interpolate(
            chunk.float(),
            size=(resolution, resolution),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W): grey -> RGB by repetition, RGB -> grey by ITU-R 601 luma."""
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)


class DataSource:
    kind = "image"  # or "points"

    @property
    def data_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return 0

    def check(self) -> None:
        """A cheap test that the data is there (no reading); raises DataError."""

    def prepare(self) -> None:
        """Read or index the data (raising DataError if it is missing)."""

    def batches(
        self, batch_size: int, seed: int, start: int = 0, device="cpu", num_workers: int = 0
    ) -> Iterator[Batch]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class ArraySource(DataSource):
    """Images held in memory as uint8 (N, C, H, W), moved once to the training device."""

    def __init__(self, resolution: int, channels: int, labels: bool = True):
        check_image_args(resolution, channels)
        self.resolution, self.channels, self.labels = int(resolution), int(channels), bool(labels)
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

    @property
    def data_shape(self):
        return (self.channels, self.resolution, self.resolution)

    def _load(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return uint8 images (N, C', H', W') and int64 labels (or None)."""
        raise NotImplementedError

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._x is None:
            x, y = self._load()
            x = match_channels(resize_uint8(x, self.resolution), self.channels)
            self._x, self._y = x.contiguous(), (y if self.labels else None)
        return self._x, self._y

    def prepare(self) -> None:
        self.arrays()

    def __len__(self) -> int:
        return int(self.arrays()[0].shape[0])

    def batches(self, batch_size, seed, start=0, device="cpu", num_workers=0):
        x, y = self.arrays()
        x = x.to(device)
        y = y.to(device) if y is not None else None
        for idx in IndexStream(x.shape[0], batch_size, seed, start):
            idx = idx.to(device)
            yield (
                to_unit_range(x.index_select(0, idx)),
                (y.index_select(0, idx) if y is not None else None),
            )


class StreamSource(DataSource):
    """Images decoded from files by DataLoader workers (for sets too big to hold)."""

    _dataset: torch.utils.data.Dataset | None = None

    def make_dataset(self) -> torch.utils.data.Dataset:
        """A map-style dataset of (image tensor in [-1, 1], label int; -1 if none)."""
        raise NotImplementedError

    def dataset(self) -> torch.utils.data.Dataset:
        if self._dataset is None:
            self._dataset = self.make_dataset()
        return self._dataset

    def prepare(self) -> None:
        self.dataset()

    def batches(self, batch_size, seed, start=0, device="cpu", num_workers=0):
        ds = self.dataset()
        sampler = IndexStream(len(ds), batch_size, seed, start)
        loader = torch.utils.data.DataLoader(
            ds,
            batch_sampler=_ListSampler(sampler),
            num_workers=num_workers,
            pin_memory=torch.device(device).type == "cuda",
            persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None,
        )
        labelled = self.num_classes > 0
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            yield x, (y.to(device, non_blocking=True) if labelled else None)


class _ListSampler:
    """Adapts an endless IndexStream to DataLoader's batch_sampler protocol."""

    def __init__(self, stream: IndexStream):
        self.stream = stream

    def __iter__(self):
        for idx in self.stream:
            yield idx.tolist()

    def __len__(self):  # DataLoader asks; the stream is endless
        return 2**62


class PointSource(DataSource):
    """A distribution sampled afresh for every batch: batch i uses a generator
    seeded by (seed, i), so streams are reproducible and resumable."""

    kind = "points"

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` points and the index of the component each came from."""
        raise NotImplementedError

    def batches(self, batch_size, seed, start=0, device="cpu", num_workers=0):
        i = start
        while True:
            g = torch.Generator().manual_seed(_mix(seed, i, 0x70))
            x, _ = self.sample(batch_size, g)
            i += 1
            yield x.to(device), None

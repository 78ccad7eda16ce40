"""Datasets on disk, through torchvision's standard classes and folder layout.

Nothing is downloaded unless ``dataset.download=true``. When the files are
missing (or a download fails, e.g. offline), the error names the files and the
folder they belong in.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ganrun.data.base import ArraySource, StreamSource, check_image_args
from ganrun.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _check_split(split: str, choices: tuple[str, ...]) -> None:
    if split not in choices:
        raise ConfigError(f"dataset.split={split!r} is not valid; choose from {', '.join(choices)}")


def data_folder(root: str) -> Path:
    """``dataset.root`` as an absolute folder: ``~`` expanded, and a relative path taken
    from the folder ganrun was started in (Hydra's ``runtime.cwd``), also under
    ``hydra.job.chdir=true``, where the job runs in its run dir: the preflight and the
    job then look in the same place, and a message names it."""
    from hydra.utils import to_absolute_path

    return Path(os.path.abspath(to_absolute_path(os.path.expanduser(str(root)))))


def _dirs_near(root: Path) -> set[Path]:
    """The folders at ``root`` and up to two levels below it (what a download makes)."""
    found: set[Path] = set()
    level = [root] if root.is_dir() else []
    for _ in range(3):
        found.update(level)
        nxt = []
        for d in level:
            try:
                nxt += [Path(e.path) for e in os.scandir(d) if e.is_dir(follow_symlinks=False)]
            except OSError:
                pass
        level = nxt
    return found


def _remove_new_empty_dirs(root: Path, before: set[Path]) -> None:
    """After a failed download: the empty folders it made (``data/MNIST/raw``, ``data/``)
    go again; a folder that holds anything, or was there before, stays."""
    made = sorted(_dirs_near(root) - before, key=lambda p: len(p.parts), reverse=True)
    for d in made:
        try:
            d.rmdir()  # only empty folders
        except OSError:
            pass


def _open(name: str, make, expected: str, download: bool, root: Path | None = None):
    """Build a torchvision dataset; turn 'not found' and download failures into one line.
    A failed download leaves no empty folders behind."""
    before = _dirs_near(root) if root is not None else set()
    # the nearest folder that exists already: what a download makes lies below it
    there = next((d for d in [root, *root.parents] if d.exists()), None) if root else None
    try:
        return make()
    # torchvision raises RuntimeError('Dataset not found...'); URLError is an OSError
    except (RuntimeError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if root is not None:
            _remove_new_empty_dirs(root, before)
            _remove_empty_parents(root, there)
        if download:
            raise DataError(
                f"could not download {name} ({msg}); with no network, put {expected} (or copy it from a machine that has it)"
            ) from None
        raise DataError(
            f"{name} not found: put {expected}, or set dataset.download=true to fetch it"
        ) from None


def _remove_empty_parents(root: Path, there: Path | None) -> None:
    """``root`` and the folders above it up to ``there`` (the nearest one that existed
    before the download), if empty."""
    for d in [root, *root.parents]:
        if there is None or d == there or there not in d.parents:
            return
        try:
            d.rmdir()
        except FileNotFoundError:  # removed with the folders below root
            continue
        except OSError:
            return


class _TorchvisionArrays(ArraySource):
    """A torchvision dataset small enough to hold in memory as uint8."""

    NAME = ""
    SPLITS = ("train", "test")

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        resolution: int = 28,
        channels: int = 1,
        split: str = "train",
        labels: bool = True,
    ):
        super().__init__(resolution, channels, labels)
        _check_split(split, self.SPLITS)
        self.root, self.download, self.split = str(data_folder(root)), bool(download), split

    @property
    def num_classes(self):
        return 10 if self.labels else 0

    def expected_files(self) -> str:
        raise NotImplementedError

    def required_paths(self) -> list[Path]:
        raise NotImplementedError

    def check(self):
        if not self.download and not all(p.exists() for p in self.required_paths()):
            raise DataError(
                f"{self.NAME} not found: put {self.expected_files()}, or set dataset.download=true to fetch it"
            )

    def make(self):
        raise NotImplementedError

    def _load(self):
        ds = _open(self.NAME, self.make, self.expected_files(), self.download, Path(self.root))
        data = ds.data
        x = torch.as_tensor(np.asarray(data))
        # (N, H, W) or (N, H, W, C) -> (N, C, H, W)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        return x.to(torch.uint8), y

    def describe(self):
        return (
            f"{self.NAME} ({self.split}, {self.resolution}px, {self.channels}ch) from {self.root}"
        )


class MNIST(_TorchvisionArrays):
    NAME = "MNIST"
    _FILES = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )

    def _tv_class(self):
        import torchvision

        return torchvision.datasets.MNIST

    def expected_files(self):
        folder = Path(self.root) / self._tv_class().__name__ / "raw"
        return f"{', '.join(self._FILES)} in {folder}/"

    def required_paths(self):
        folder = Path(self.root) / self._tv_class().__name__ / "raw"
        return [folder / f for f in self._FILES]

    def make(self):
        return self._tv_class()(self.root, train=self.split == "train", download=self.download)


class FashionMNIST(MNIST):
    NAME = "Fashion-MNIST"

    def _tv_class(self):
        import torchvision

        return torchvision.datasets.FashionMNIST


class CIFAR10(_TorchvisionArrays):
    NAME = "CIFAR-10"

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        resolution: int = 32,
        channels: int = 3,
        split: str = "train",
        labels: bool = True,
    ):
        super().__init__(root, download, resolution, channels, split, labels)

    def expected_files(self):
        return f"the extracted cifar-10-batches-py/ folder (data_batch_1..5, test_batch, batches.meta) in {Path(self.root)}/"

    def required_paths(self):
        folder = Path(self.root) / "cifar-10-batches-py"
        return [folder / f for f in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta")]

    def make(self):
        import torchvision

        return torchvision.datasets.CIFAR10(
            self.root, train=self.split == "train", download=self.download
        )


class _ConvertMode:
    """PIL mode conversion (a class, not a lambda, so spawned workers can pickle it)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, im):
        return im.convert(self.mode)


def _image_transform(resolution: int, channels: int, center_crop: int | None = None):
    from torchvision import transforms as T

    steps = [_ConvertMode("RGB" if channels == 3 else "L")]
    if center_crop:
        steps.append(T.CenterCrop(center_crop))
    steps += [
        T.Resize(resolution, antialias=True),
        T.CenterCrop(resolution),
        T.ToTensor(),
        T.Normalize([0.5] * channels, [0.5] * channels),
    ]
    return T.Compose(steps)


class _Unlabelled(torch.utils.data.Dataset):
    """(image, -1) from a dataset whose target may be None."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i][0], -1


class CelebA(StreamSource):
    SPLITS = ("train", "valid", "test", "all")
    FILES = (
        "img_align_celeba/",
        "list_eval_partition.txt",
        "identity_CelebA.txt",
        "list_attr_celeba.txt",
        "list_bbox_celeba.txt",
        "list_landmarks_align_celeba.txt",
    )

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        resolution: int = 64,
        channels: int = 3,
        split: str = "train",
        center_crop: int = 140,
    ):
        check_image_args(resolution, channels)
        _check_split(split, self.SPLITS)
        self.root, self.download, self.split = str(data_folder(root)), bool(download), split
        self.resolution, self.channels, self.center_crop = (
            int(resolution),
            int(channels),
            int(center_crop),
        )

    @property
    def data_shape(self):
        return (self.channels, self.resolution, self.resolution)

    def _expected(self) -> str:
        return f"{', '.join(self.FILES)} in {Path(self.root) / 'celeba'}/"

    def check(self):
        folder = Path(self.root) / "celeba"
        if not self.download and not all((folder / f.rstrip("/")).exists() for f in self.FILES):
            raise DataError(
                f"CelebA not found: put {self._expected()}, or set dataset.download=true to fetch it"
            )

    def make_dataset(self):
        import torchvision

        expected = self._expected()
        tf = _image_transform(self.resolution, self.channels, self.center_crop)
        ds = _open(
            "CelebA",
            lambda: torchvision.datasets.CelebA(
                self.root, split=self.split, target_type=[], transform=tf, download=self.download
            ),
            expected,
            self.download,
            Path(self.root),
        )
        return _Unlabelled(ds)

    def describe(self):
        return (
            f"CelebA ({self.split}, crop {self.center_crop}, {self.resolution}px) from {self.root}"
        )


class _Files(torch.utils.data.Dataset):
    def __init__(self, files, labels, transform):
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            x = self.transform(im)
        return x, self.labels[i]


class ImageFolder(StreamSource):
    """Every image under ``root`` (recursively). With labels=true, the class of an
    image is the name of the first-level subfolder it lies in."""

    def __init__(self, root: str, resolution: int = 64, channels: int = 3, labels: bool = False):
        check_image_args(resolution, channels)
        self.root, self.resolution, self.channels, self.labels = (
            str(root),
            int(resolution),
            int(channels),
            bool(labels),
        )
        self._index: tuple[list[Path], list[int], list[str]] | None = None

    @property
    def data_shape(self):
        return (self.channels, self.resolution, self.resolution)

    def _scan(self):
        if self._index is None:
            root = Path(self.root).expanduser()
            if not root.is_dir():
                raise DataError(
                    f"dataset.root={self.root} is not a folder: point dataset.root at a folder of images"
                )
            files = sorted(
                p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
            )
            if not files:
                raise DataError(
                    f"no images ({', '.join(IMAGE_EXTENSIONS)}) under dataset.root={self.root}"
                )
            classes: list[str] = []
            labels = [-1] * len(files)
            if self.labels:
                classes = sorted(
                    {
                        p.relative_to(root).parts[0]
                        for p in files
                        if len(p.relative_to(root).parts) > 1
                    }
                )
                if len(classes) < 2:
                    raise DataError(
                        f"labels=true needs images in at least two subfolders of {self.root} (one per class)"
                    )
                lookup = {c: i for i, c in enumerate(classes)}
                files = [p for p in files if len(p.relative_to(root).parts) > 1]
                labels = [lookup[p.relative_to(root).parts[0]] for p in files]
            self._index = (files, labels, classes)
        return self._index

    @property
    def num_classes(self):
        return len(self._scan()[2]) if self.labels else 0

    def check(self):
        if not Path(self.root).expanduser().is_dir():
            raise DataError(
                f"dataset.root={self.root} is not a folder: point dataset.root at a folder of images"
            )

    def make_dataset(self):
        files, labels, _ = self._scan()
        return _Files(files, labels, _image_transform(self.resolution, self.channels))

    def describe(self):
        return f"images under {self.root} ({self.resolution}px, {self.channels}ch)"

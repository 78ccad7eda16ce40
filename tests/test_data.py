"""Datasets: the embedded digits, deterministic streams, folders, toy mixtures, errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ganrun.data import embedded, toy, vision
from ganrun.data.base import IndexStream, match_channels, resize_uint8
from ganrun.data.fake import Fake
from ganrun.errors import ConfigError, DataError


def test_embedded_mnist_is_real_and_split_is_fixed():
    images, labels = embedded.read_all()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    s1, s2 = embedded.split_indices(labels), embedded.split_indices(labels)
    assert np.array_equal(s1["test"], s2["test"])
    assert len(s1["train"]) == 4500 and len(s1["test"]) == 500
    assert not set(s1["train"]) & set(s1["test"])
    assert np.bincount(labels[s1["test"]]).tolist() == [50] * 10
    # real digits: mostly black background, some bright strokes
    assert (images == 0).mean() > 0.7 and images.max() == 255


@pytest.mark.parametrize("res,ch", [(28, 1), (32, 1), (64, 3)])
def test_embedded_mnist_shapes_and_range(res, ch):
    ds = embedded.EmbeddedMNIST(resolution=res, channels=ch)
    x, y = next(ds.batches(32, seed=0))
    assert x.shape == (32, ch, res, res) and y.shape == (32,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() == -1
    assert ds.num_classes == 10 and len(ds) == 4500


def test_embedded_mnist_splits():
    test = embedded.EmbeddedMNIST(split="test")
    assert len(test) == 500
    with pytest.raises(ConfigError, match="choose from train, test, all"):
        embedded.EmbeddedMNIST(split="val")


def test_unlabelled_option():
    ds = embedded.EmbeddedMNIST(labels=False)
    _, y = next(ds.batches(8, seed=0))
    assert y is None and ds.num_classes == 0


def test_index_stream_is_deterministic_resumable_and_covers_each_epoch():
    full = IndexStream(10, 3, seed=5)
    batches = [next(full) for _ in range(9)]  # 3 batches per epoch, 3 epochs
    resumed = IndexStream(10, 3, seed=5, start=4)
    assert all(torch.equal(batches[i], next(resumed)) for i in range(4, 9))
    epoch0 = torch.cat(batches[:3])
    assert len(set(epoch0.tolist())) == 9  # no repeats within an epoch
    assert not torch.equal(torch.cat(batches[3:6]), epoch0)  # reshuffled per epoch
    assert not torch.equal(next(IndexStream(10, 3, seed=6)), batches[0])


def test_batch_larger_than_dataset():
    with pytest.raises(DataError, match="fewer than trainer.batch_size"):
        next(IndexStream(4, 8, seed=0))


def test_resize_and_channels():
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    y = resize_uint8(x, 64)
    assert y.shape == (2, 1, 64, 64) and y.dtype == torch.uint8
    rgb = match_channels(x, 3)
    assert rgb.shape == (2, 3, 28, 28) and torch.equal(rgb[:, 0], rgb[:, 2])
    assert torch.equal(match_channels(rgb, 1), x)  # luma of a grey image is the grey


def test_ring_and_grid():
    ring = toy.Ring()
    assert ring.n_modes == 8 and ring.data_shape == (2,)
    assert torch.allclose(ring.centers.norm(dim=1), torch.ones(8))
    x, k = ring.sample(20_000, torch.Generator().manual_seed(0))
    resid = x - ring.centers[k]
    assert resid.std().item() == pytest.approx(0.01, rel=0.05)
    assert np.bincount(k.numpy()).min() > 2000  # equally likely components
    grid = toy.Grid()
    assert grid.n_modes == 25
    assert sorted(set(grid.centers[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    x, k = grid.sample(20_000, torch.Generator().manual_seed(0))
    assert (x - grid.centers[k]).std().item() == pytest.approx(0.05, rel=0.05)


def test_point_stream_is_resumable():
    ring = toy.Ring()
    a = ring.batches(16, seed=3)
    first = [next(a)[0] for _ in range(5)]
    b = ring.batches(16, seed=3, start=3)
    assert torch.equal(next(b)[0], first[3])


def test_fake_dataset():
    ds = Fake(resolution=32, channels=3, size=64, num_classes=4)
    x, y = next(ds.batches(8, seed=0))
    assert x.shape == (8, 3, 32, 32) and y.max() < 4


def _write_images(folder, n, size=(20, 12), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).convert(mode).save(folder / f"img{i}.png")


def test_image_folder(tmp_path):
    _write_images(tmp_path / "a", 5)
    _write_images(tmp_path / "b" / "deep", 4, mode="L")
    ds = vision.ImageFolder(str(tmp_path), resolution=16, channels=3)
    ds.prepare()
    x, y = next(ds.batches(4, seed=0))
    assert x.shape == (4, 3, 16, 16) and y is None
    assert x.min() >= -1 and x.max() <= 1
    labelled = vision.ImageFolder(str(tmp_path), resolution=8, channels=1, labels=True)
    assert labelled.num_classes == 2
    x, y = next(labelled.batches(9, seed=0))
    assert x.shape == (9, 1, 8, 8) and sorted(set(y.tolist())) == [0, 1]


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        vision.ImageFolder(str(tmp_path / "missing")).check()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        vision.ImageFolder(str(tmp_path / "empty")).prepare()


def _idx_images(path, images):
    with gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(images), 28, 28))
        f.write(images.tobytes())


def _idx_labels(path, labels):
    with open(path, "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)))
        f.write(labels.astype(np.uint8).tobytes())


def test_mnist_from_files_on_disk(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        _idx_images(
            raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        _idx_labels(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    ds = vision.MNIST(root=str(tmp_path), resolution=32, channels=1)
    ds.check()
    assert len(ds) == 40
    x, y = next(ds.batches(8, seed=0))
    assert x.shape == (8, 1, 32, 32) and y.shape == (8,)
    assert len(vision.MNIST(root=str(tmp_path), split="test")) == 20


@pytest.mark.parametrize(
    "cls,pattern",
    [
        (
            vision.MNIST,
            r"MNIST not found: put train-images-idx3-ubyte.* in .*MNIST/raw/, or set dataset.download=true",
        ),
        (vision.FashionMNIST, r"Fashion-MNIST not found: put .* in .*FashionMNIST/raw/"),
        (vision.CIFAR10, r"CIFAR-10 not found: put the extracted cifar-10-batches-py/ folder"),
        (
            vision.CelebA,
            r"CelebA not found: put img_align_celeba/, list_eval_partition.txt.* in .*celeba/",
        ),
    ],
)
def test_missing_files_say_what_to_put_where(tmp_path, cls, pattern):
    with pytest.raises(DataError, match=pattern):
        cls(root=str(tmp_path)).check()
    with pytest.raises(DataError, match=pattern.split(":")[0]):
        cls(root=str(tmp_path)).prepare()

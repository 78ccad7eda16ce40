"""ganrun sample: grids, single images, interpolations; slerp."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from ganrun import checkpoint as ckpt
from ganrun import viz
from ganrun.commands.sample import load_generator, load_generator_with_path, sample
from ganrun.errors import CheckpointError, ConfigError
from tests.conftest import compose_config, run_train, tiny_overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    run_train(
        run,
        tiny_overrides(
            "dcgan", "mnist_embedded", "logger.tensorboard=false", "trainer.ema_decay=0.9"
        ),
    )
    return run


def _sample_cfg(*overrides):
    return compose_config(list(overrides), config_name="sample")


def test_grid_png_size(trained, tmp_path):
    out = tmp_path / "grid.png"
    sample(_sample_cfg(f"ckpt={trained}", "n=12", "nrow=4", f"out={out}"), tmp_path / "default.png")
    # 4 columns x 3 rows of 32 px (dcgan raises the 28 px digits to 32) with 2 px padding
    assert Image.open(out).size == (4 * 34 + 2, 3 * 34 + 2)


def test_same_seed_same_picture(trained, tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    sample(_sample_cfg(f"ckpt={trained}", "n=4", f"out={a}", "seed=1"), a)
    sample(_sample_cfg(f"ckpt={trained}", "n=4", f"out={b}", "seed=1"), b)
    sample(_sample_cfg(f"ckpt={trained}", "n=4", f"out={c}", "seed=2"), c)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_per_image(trained, tmp_path):
    folder = tmp_path / "imgs"
    paths = sample(
        _sample_cfg(f"ckpt={trained}", "n=5", "per_image=true", f"out={folder}"), tmp_path / "x.png"
    )
    assert len(paths) == 5 and sorted(p.name for p in folder.iterdir())[0] == "000000.png"
    assert Image.open(paths[0]).size == (32, 32)
    assert Image.open(paths[0]).mode == "L"  # grey digits stay grey, not RGB (issue 17)


def test_colour_pictures_stay_rgb():
    import torch

    from ganrun import fsio

    grey = Image.open(io.BytesIO(fsio.encode_image(torch.rand(1, 4, 4).expand(3, 4, 4))))
    colour = Image.open(io.BytesIO(fsio.encode_image(torch.rand(3, 4, 4))))
    assert (grey.mode, colour.mode) == ("L", "RGB")


def test_interpolation_grid(trained, tmp_path):
    out = tmp_path / "interp.png"
    sample(_sample_cfg(f"ckpt={trained}", "n=16", "interpolate=true", "steps=8", f"out={out}"), out)
    assert Image.open(out).size == (8 * 34 + 2, 2 * 34 + 2)


def test_uses_ema_when_present(trained):
    G, _, state = load_generator(trained, torch.device("cpu"), use_ema=True)
    ema = state["models"]["G_ema"]
    assert all(torch.equal(v, ema[k]) for k, v in G.state_dict().items())
    G, _, _ = load_generator(trained, torch.device("cpu"), use_ema=False)
    assert all(torch.equal(v, state["models"]["G"][k]) for k, v in G.state_dict().items())


def test_load_generator_with_path_names_the_file_it_read(trained):
    newest = ckpt.step_checkpoints(trained / ckpt.CKPT_DIR)[-1][1]
    for target in (trained, newest):
        path, G, _, state = load_generator_with_path(target, torch.device("cpu"))
        assert path == newest and ckpt.load_file(path)["step"] == state["step"]
        assert not G.training


def test_bad_sample_requests(trained, tmp_path):
    with pytest.raises(ConfigError, match="choose one of"):
        sample(
            _sample_cfg(f"ckpt={trained}", "per_image=true", "interpolate=true"), tmp_path / "x.png"
        )
    with pytest.raises(ConfigError, match="normal latent prior"):
        sample(
            _sample_cfg(f"ckpt={trained}", "truncation=0.5", f"out={tmp_path / 't.png'}"),
            tmp_path / "x.png",
        )
    with pytest.raises(CheckpointError, match="no checkpoint"):
        sample(_sample_cfg(f"ckpt={tmp_path / 'none'}"), tmp_path / "x.png")
    with pytest.raises(ConfigError, match=".png"):
        sample(_sample_cfg(f"ckpt={trained}", f"out={tmp_path / 'grid.txt'}"), tmp_path / "x.png")


def test_slerp():
    a, b = torch.randn(3, 10), torch.randn(3, 10)
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)  # equal norms
    path = viz.slerp(a, b, torch.linspace(0, 1, 5))
    assert path.shape == (3, 5, 10)
    assert torch.allclose(path[:, 0], a, atol=1e-5) and torch.allclose(path[:, -1], b, atol=1e-5)
    # on the great circle: the norm stays that of the endpoints
    assert torch.allclose(path.norm(dim=2), a.norm(dim=1, keepdim=True).expand(3, 5), atol=1e-4)
    same = viz.slerp(a, a, torch.tensor([0.5]))
    assert torch.allclose(same[:, 0], a, atol=1e-5)


def test_scatter_marks_points_and_centres():
    img = viz.scatter(torch.zeros(10, 2), centers=torch.tensor([[1.0, 1.0]]), size=64)
    assert img.shape == (3, 64, 64)
    assert (img[2] > 0.8).any() and (img[0] > 0.8).any()

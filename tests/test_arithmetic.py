"""ganrun sample numbered=true / arithmetic.*: DCGAN's latent vector arithmetic
(Radford et al. 2015, Sec. 6.3, Fig. 7), and model figures through G.figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganrun.commands.sample import load_generator, model_figure, sample
from ganrun.errors import ConfigError
from ganrun.models import dcgan, stylegan
from ganrun.sampling import arithmetic
from tests.conftest import cli_error, compose_config, run_train, tiny_overrides

SEED, N, NROW = 3, 12, 4
PICKS = ["arithmetic.a=[4,7,9]", "arithmetic.b=[1,2]", "arithmetic.c=[5]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny DCGAN with virtual batch norm and an EMA (so sampling a VBN G_ema is covered)."""
    run = tmp_path_factory.mktemp("run")
    run_train(
        run,
        tiny_overrides(
            "dcgan", "mnist_embedded", "logger.tensorboard=false", "trainer.ema_decay=0.9",
            "model.G.norm=virtual_batch", "trainer.steps=2",
        ),
    )  # fmt: skip
    return run


def _cfg(*overrides):
    return compose_config(list(overrides), config_name="sample")


def _tile(img: np.ndarray, index: int, cols: int, side: int, band: int, margin: int = 0):
    """The pixels of tile ``index`` of a captioned grid (padding 2)."""
    r, c = divmod(index, cols)
    x0, y0 = margin + 2 + c * (side + 2), 2 + r * (side + band + 2) + band
    return img[y0 : y0 + side, x0 : x0 + side].astype(int)


def test_the_arithmetic_is_the_mean_of_each_group_then_a_minus_b_plus_c():
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0], [-2.0, 1.0], [5.0, 5.0]])
    means, y = arithmetic.combine(z, {"a": [0, 1], "b": [2], "c": [3, 4]})
    assert torch.equal(means, torch.tensor([[2.0, 1.0], [0.0, 4.0], [1.5, 3.0]]))
    assert torch.equal(y, torch.tensor([3.5, 0.0]))  # (2, 1) - (0, 4) + (1.5, 3)
    g = torch.Generator().manual_seed(0)
    noisy = arithmetic.noisy(y, 500, 0.25, g)
    assert noisy.shape == (500, 2) and (noisy - y).abs().max() <= 0.25
    assert (noisy - y).abs().max() > 0.2  # U(-0.25, 0.25): the whole range is used
    assert torch.equal(noisy, arithmetic.noisy(y, 500, 0.25, torch.Generator().manual_seed(0)))


def test_numbered_grid_tiles_are_the_arithmetics_exemplars_and_y_is_g_of_the_sum(trained, tmp_path):
    numbered, fig = tmp_path / "numbered.png", tmp_path / "arith.png"
    common = [f"ckpt={trained}", f"seed={SEED}", f"n={N}"]
    sample(_cfg(*common, f"nrow={NROW}", "numbered=true", f"out={numbered}"), numbered)
    sample(_cfg(*common, *PICKS, "arithmetic.noise=3", f"out={fig}"), fig)
    grid, picture = np.asarray(Image.open(numbered)), np.asarray(Image.open(fig))
    # the digits, 32 px under the dcgan recipe, are drawn at 64 px (MIN_TILE 48), under
    # a 20 px caption band
    side, band = 64, 20
    assert grid.shape == (3 * (side + band + 2) + 2, NROW * (side + 2) + 2)  # greyscale
    cols = 3 + 2  # the widest group (3 exemplars; 3 noisy results), a gap, the means
    assert picture.shape[0] == 4 * (side + band + 2) + 2
    margin = picture.shape[1] - (cols * (side + 2) + 2)  # the row labels' column
    assert 0 < margin < 60
    for row, tiles in enumerate(([4, 7, 9], [1, 2], [5])):  # each exemplar is its grid tile
        for k, i in enumerate(tiles):
            shown = _tile(picture, row * cols + k, cols, side, band, margin)
            assert np.array_equal(shown, _tile(grid, i, NROW, side, band))
    # the result, computed here by hand from the grid's latents
    G, _, _ = load_generator(trained, torch.device("cpu"))
    torch.manual_seed(SEED)
    z = G.sample_z(N, generator=torch.Generator().manual_seed(SEED))
    y = z[[4, 7, 9]].mean(0) - z[[1, 2]].mean(0) + z[[5]].mean(0)
    with torch.no_grad():
        img = G(y[None])[0, 0].repeat_interleave(2, 0).repeat_interleave(2, 1)
    expected = ((img.clamp(-1, 1) + 1) / 2 * 255 + 0.5).floor().numpy()
    shown = _tile(picture, 3 * cols + cols - 1, cols, side, band, margin)
    assert np.abs(shown - expected).max() <= 1
    blank = _tile(picture, 2 * cols + 1, cols, side, band, margin)  # group C has one exemplar
    assert (blank == 255).all()


def test_the_whole_node_can_be_given_in_hydras_dict_syntax():
    cfg = _cfg("ckpt=x", "arithmetic={a:[1,2,3],b:[4],c:[5]}")
    assert arithmetic.groups(cfg.arithmetic) == {"a": [1, 2, 3], "b": [4], "c": [5]}
    assert cfg.arithmetic.noise == 8 and cfg.arithmetic.noise_scale == 0.25  # Fig. 7


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["n=12", "arithmetic.a=[4,12]", "arithmetic.b=[1]", "arithmetic.c=[2]"],
         "arithmetic.a names tile 12, but the grid of n=12 has tiles 0..11"),
        (["arithmetic.a=[1]", "arithmetic.c=[2]"], "arithmetic.b is empty"),
        ([*PICKS, "arithmetic.a=[-1]"], "names tile -1"),
        ([*PICKS, "numbered=true"], "run them one after the other"),
        ([*PICKS, "interpolate=true"], "drop interpolate"),
        ([*PICKS, "class_idx=1"], "unconditional models; drop class_idx"),
        ([*PICKS, "arithmetic.noise=-1"], "arithmetic.noise must be >= 0"),
        (["arithmetic.noise=3"], "arithmetic.noise / noise_scale need exemplars"),
        (["numbered=true", "per_image=true"], "drop per_image"),
        (["numbered=true", "rejection.method=drs"], "drop rejection.method"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_before_loading(overrides, message, tmp_path):
    # a checkpoint that does not exist: the settings are refused before it is read
    with pytest.raises(ConfigError, match=message) as e:
        sample(_cfg(f"ckpt={tmp_path / 'none'}", *overrides), tmp_path / "x.png")
    assert "\n" not in str(e.value)


def test_out_of_range_tile_is_one_line_from_the_cli(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = cli_error(["sample", f"ckpt={trained}", "n=8", "arithmetic.a=[8]", "arithmetic.b=[0]",
                     "arithmetic.c=[1]"], capsys)  # fmt: skip
    assert "tiles 0..7" in err and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "overrides,data,message",
    [
        (["model=cgan"], {"shape": [1, 28, 28], "num_classes": 10}, "class-conditional"),
        (["model=infogan"], {"shape": [1, 28, 28], "num_classes": 10}, "latent codes"),
        (["model=dcgan", "dataset=ring"], {"shape": [2], "num_classes": 0}, "2-D points"),
    ],
)
def test_models_arithmetic_cannot_serve_are_refused(overrides, data, message):
    with pytest.raises(ConfigError, match=message):
        arithmetic.check_stored_model(compose_config(overrides), data, arithmetic=True)
    # an unconditional DCGAN on labelled data (build gives it no classes) is fine
    arithmetic.check_stored_model(
        compose_config(["model=dcgan"]), {"shape": [1, 28, 28], "num_classes": 10}, True
    )
    # numbered grids only need images
    if data["shape"] != [2]:
        arithmetic.check_stored_model(compose_config(overrides), data, arithmetic=False)


def test_model_figures_come_from_the_generator():
    G = stylegan.Generator((3, 32, 32), z_dim=8, w_dim=8, width=8, mapping_layers=2).eval()
    cfg = _cfg("ckpt=x", "mixing=true", "mixing_columns=2", "mixing_rows=1")
    images, per_row = model_figure(G, "mixing", cfg, torch.Generator().manual_seed(0), "cpu")
    assert per_row == 3 and images.shape == (4 * 3, 3, 32, 32)  # (1 + 2) x (1 + 3 groups)
    with pytest.raises(ConfigError, match=r"mixing=true needs a style-based generator"):
        model_figure(dcgan.Generator((1, 28, 28), z_dim=4, width=2), "mixing", cfg, None, "cpu")

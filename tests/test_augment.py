"""DiffAugment (Zhao et al. 2020): each policy does what the paper says, gradients flow
through it, the objective applies it to everything D sees, and resume stays exact."""

from __future__ import annotations

import pytest
import torch

from ganrun import build
from ganrun.augment import DiffAugment
from ganrun.errors import ConfigError
from tests.conftest import assert_resume_is_exact, compose_config, tiny_overrides


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved down by dy and right by dx, zero filled (the reference for translation)."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    src = x[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[..., max(0, dy) : max(0, dy) + src.shape[-2], max(0, dx) : max(0, dx) + src.shape[-1]] = src
    return out


def test_translation_is_a_zero_filled_shift_of_at_most_an_eighth():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 16, 16)
    out = DiffAugment(["translation"])(x)
    shifts = set()
    for i in range(x.shape[0]):  # each image is one shift of itself, |shift| <= 2 = 16/8
        match = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[i], _shifted(x[i], dy, dx))
        ]
        assert len(match) == 1, i
        shifts.add(match[0])
    assert len(shifts) > 10  # drawn per image


def test_cutout_zeroes_one_square_of_half_the_size_clipped_at_the_border():
    torch.manual_seed(0)
    x = torch.ones(200, 1, 16, 16)
    out = DiffAugment(["cutout"])(x)
    for img in out[:, 0]:
        rows, cols = torch.nonzero(img == 0, as_tuple=True)
        assert 0 < rows.numel() <= 64  # at most 8 x 8 pixels
        # one axis-aligned rectangle, clipped: all pixels between its corners are zero
        r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
        assert rows.numel() == (r1 - r0 + 1) * (c1 - c0 + 1)
        assert r1 - r0 + 1 <= 8 and c1 - c0 + 1 <= 8
    assert (out == 0).float().mean() == pytest.approx(0.2, abs=0.05)  # ~64/256, less at borders


def test_color_changes_brightness_and_contrast_per_image():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 8, 8) * 2 - 1
    out = DiffAugment(["color"])(x)
    means = (out - x).mean(dim=(1, 2, 3))
    assert means.std() > 0.1  # brightness differs between images
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_gradients_flow_through_every_policy():
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    DiffAugment(["color", "translation", "cutout"])(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs",
    [{"policy": []}, {"policy": ["warp"]}, {"translation_ratio": 0.0}, {"cutout_ratio": 1}],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ConfigError):
        DiffAugment(**kwargs)


def test_points_are_refused_before_a_run():
    cfg = compose_config(["model=pacgan_mlp", "dataset=ring", "augment=diffaugment"])
    with pytest.raises(ConfigError, match="transforms images"):
        build.validate(cfg)


def test_the_objective_augments_what_d_sees_in_both_phases():
    cfg = compose_config(tiny_overrides("dcgan", "mnist_embedded", "augment=diffaugment"))
    b = build.build(cfg)
    assert isinstance(b.objective.augment, DiffAugment)
    seen = []
    real_augment = b.objective.augment
    b.objective.augment = lambda x: (seen.append(x.requires_grad), real_augment(x))[1]
    real, real_c = next(b.data.batches(4, 0))
    b.objective.d_loss(b.G, b.D, real, real_c, 0)
    assert seen == [False, False]  # T(x) and T(G(z)), G frozen in D's step
    loss, _ = b.objective.g_loss(b.G, b.D, real, real_c, 0)
    assert seen[2:] == [True]  # T(G(z)) with G's graph: G learns through T
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in b.G.parameters())
    assert compose_config([]).augment == {}  # no recipe augments by default


def test_resume_with_augmentation_gives_exactly_the_uninterrupted_weights(tmp_path):
    overrides = tiny_overrides("dcgan", "mnist_embedded", "augment=diffaugment")
    assert_resume_is_exact(tmp_path, overrides, steps=4, split=2)

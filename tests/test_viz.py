"""Scatter plots of 2-D samples: axes whose ticks sit where the data values are, one
scale for every frame of a run, the step number and a count of samples off the plot."""

from __future__ import annotations

import math

import torch

from ganrun import viz

RING = torch.stack(
    [torch.cos(torch.arange(8) * math.pi / 4), torch.sin(torch.arange(8) * math.pi / 4)], 1
)


def _dark(img: torch.Tensor) -> torch.Tensor:
    return img.max(0).values < 0.5  # ink: the frame, ticks and labels (not the blue points)


def _blue(img: torch.Tensor) -> torch.Tensor:
    return (img[2] > 0.8) & (img[0] < 0.2)


def test_ticks_sit_at_the_data_values():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    img = viz.scatter(points, extent=1.25, step=None)
    assert img.shape == (3, 256, 256)
    dark = _dark(img)
    frame_bottom = max(r for r in range(256) if dark[r].sum() > 150)  # the frame's bottom edge
    ticks = dark[frame_bottom + 2].nonzero().flatten().tolist()  # tick marks below it
    assert len(ticks) == 5  # -1, -0.5, 0, 0.5, 1
    cols = _blue(img).any(0).nonzero().flatten().tolist()
    centres = [sum(g) // len(g) for g in _groups(cols)]  # each point is a 3-pixel square
    assert centres == [ticks[2], ticks[4]]  # x = 0 and x = 1


def _groups(cols: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for c in cols:
        if out and c == out[-1][-1] + 1:
            out[-1].append(c)
        else:
            out.append([c])
    return out


def test_frames_of_a_run_share_one_scale_and_carry_their_step():
    g = torch.Generator().manual_seed(0)
    early = 0.3 * torch.randn(500, 2, generator=g)  # collapsed near the origin
    late = RING[torch.randint(0, 8, (500,), generator=g)] + 0.02 * torch.randn(500, 2, generator=g)
    a = viz.picture(early, centers=RING, step=100)
    b = viz.picture(late, centers=RING, step=5000)
    dark_a, dark_b = _dark(a), _dark(b)
    # the axes (left of the plot and below it) are the same pixels in both frames
    frame_bottom = max(r for r in range(256) if dark_a[r].sum() > 150)
    frame_left = min(c for c in range(256) if dark_a[:, c].sum() > 150)
    assert torch.equal(dark_a[frame_bottom + 1 :], dark_b[frame_bottom + 1 :])
    assert torch.equal(dark_a[:, :frame_left], dark_b[:, :frame_left])
    # the step label above the plot differs, and is absent without a step
    top = min(r for r in range(256) if dark_a[r].sum() > 150)
    assert not torch.equal(dark_a[:top], dark_b[:top])
    assert dark_a[:top].any() and not _dark(viz.picture(late, centers=RING))[:top].any()


def test_samples_off_the_plot_are_counted():
    inside = RING.repeat(4, 1)
    far = torch.cat([inside, torch.full((3, 2), 50.0)])
    red = lambda img: ((img[0] > 0.5) & (img[1] < 0.3)).any(1)  # noqa: E731
    top = 12  # the label row, above the plot
    assert not red(viz.scatter(inside, RING))[:top].any()
    assert red(viz.scatter(far, RING))[:top].any()


def test_small_pictures_keep_the_bare_plot():
    img = viz.scatter(torch.zeros(10, 2), centers=torch.tensor([[1.0, 1.0]]), size=64, step=3)
    assert img.shape == (3, 64, 64) and not _dark(img).any()  # no room for labels
    assert _blue(img).any()

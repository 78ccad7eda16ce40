"""Per-model: output shapes, one D and one G step, parameter counts."""

from __future__ import annotations

import pytest
import torch

from ganrun.errors import ConfigError
from ganrun.losses import NonSaturating
from ganrun.models import dcgan, vanilla
from ganrun.models.base import count_parameters, sample_latent
from ganrun.objective import Objective


@pytest.mark.parametrize("res", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(res, channels):
    shape = (channels, res, res)
    G = dcgan.Generator(shape, z_dim=16, width=8)
    D = dcgan.Discriminator(shape, width=8)
    x = G(G.sample_z(3))
    assert x.shape == (3, *shape)
    assert x.abs().max() <= 1.0  # tanh output
    assert D(x).shape == (3,)


def test_dcgan_matches_the_pytorch_example_at_64px():
    # The PyTorch examples' DCGAN (ngf = ndf = 64, nz = 100, 3 channels) has
    # 3,576,704 generator and 2,765,568 discriminator parameters.
    G = dcgan.Generator((3, 64, 64), z_dim=100, width=64)
    D = dcgan.Discriminator((3, 64, 64), width=64)
    assert count_parameters(G) == 3_576_704
    assert count_parameters(D) == 2_765_568


def test_dcgan_layers_follow_the_paper():
    G = dcgan.Generator((3, 64, 64), width=8)
    D = dcgan.Discriminator((3, 64, 64), width=8)
    g_layers, d_layers = list(G.net), [*D.trunk, D.head]
    assert isinstance(g_layers[-1], torch.nn.Tanh) and isinstance(
        g_layers[-2], torch.nn.ConvTranspose2d
    )
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.Linear)) for m in G.modules())
    assert isinstance(d_layers[1], torch.nn.LeakyReLU) and d_layers[1].negative_slope == 0.2
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules()) == 4
    assert all(
        m.stride == (2, 2)
        for m in D.modules()
        if isinstance(m, torch.nn.Conv2d) and m is not d_layers[-1]
    )
    w = torch.cat(
        [m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    )
    assert w.std().item() == pytest.approx(0.02, rel=0.05)


def test_dcgan_on_points():
    G = dcgan.Generator((2,), z_dim=8, width=4)
    D = dcgan.Discriminator((2,), width=4)
    assert G(G.sample_z(5)).shape == (5, 2)
    assert D(torch.randn(5, 2)).shape == (5,)


def test_dcgan_refuses_unsupported_size():
    with pytest.raises(ConfigError, match=r"\{28, 32, 64\}"):
        dcgan.Generator((3, 48, 48))
    with pytest.raises(ConfigError, match=r"\{28, 32, 64\}"):
        dcgan.Discriminator((3, 64, 32))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (2,)])
def test_vanilla_shapes(shape):
    G = vanilla.Generator(shape, z_dim=16, width=40)
    D = vanilla.Discriminator(shape, width=40)
    x = G(G.sample_z(4))
    assert x.shape == (4, *shape)
    assert D(x).shape == (4,)


def test_vanilla_sizes_follow_the_reference_code():
    G = vanilla.Generator((1, 28, 28))
    D = vanilla.Discriminator((1, 28, 28))
    lin = [m for m in G.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in lin] == [1200, 1200, 784]
    maxouts = [m for m in D.modules() if isinstance(m, vanilla.Maxout)]
    assert [(m.units, m.pieces) for m in maxouts] == [(240, 5), (240, 5)]
    drops = [m.p for m in D.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.2, 0.5, 0.5]
    assert lin[0].weight.abs().max() <= 0.05


def test_vanilla_discriminator_can_see_unit_pixels():
    torch.manual_seed(0)
    D = vanilla.Discriminator((1, 8, 8), width=20).eval()
    U = vanilla.Discriminator((1, 8, 8), width=20, unit_pixels=True).eval()
    U.load_state_dict(D.state_dict())
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    assert torch.allclose(U(x), D((x + 1) / 2))
    assert not torch.allclose(U(x), D(x))
    assert vanilla.Discriminator((2,), width=20, unit_pixels=True).unit_pixels is False  # points


def test_maxout_is_max_of_pieces():
    m = vanilla.Maxout(3, units=2, pieces=4)
    x = torch.randn(5, 3)
    full = m.linear(x).view(5, 2, 4)
    assert torch.equal(m(x), full.max(dim=2).values)


@pytest.mark.parametrize(
    "G,D,shape",
    [
        (
            lambda s: dcgan.Generator(s, z_dim=16, width=8),
            lambda s: dcgan.Discriminator(s, width=8),
            (1, 28, 28),
        ),
        (
            lambda s: vanilla.Generator(s, z_dim=16, width=40),
            lambda s: vanilla.Discriminator(s, width=40),
            (1, 28, 28),
        ),
        (
            lambda s: vanilla.Generator(s, z_dim=4, width=40),
            lambda s: vanilla.Discriminator(s, width=40),
            (2,),
        ),
    ],
)
def test_one_d_and_one_g_step_change_only_their_network(G, D, shape):
    torch.manual_seed(0)
    G, D = G(shape), D(shape)
    obj = Objective(NonSaturating())
    opt_g = torch.optim.Adam(G.parameters(), 1e-3)
    opt_d = torch.optim.Adam(D.parameters(), 1e-3)
    real = torch.rand(8, *shape) * 2 - 1

    g0 = [p.clone() for p in G.parameters()]
    loss, stats = obj.d_loss(G, D, real, None, 0)
    assert torch.isfinite(loss) and {"loss/d", "D/real", "D/fake"} <= set(stats)
    opt_d.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in G.parameters())  # fakes are generated without a graph
    opt_d.step()
    assert all(torch.equal(a, b) for a, b in zip(g0, G.parameters()))

    d0 = [p.clone() for p in D.parameters()]
    D.requires_grad_(False)
    loss, stats = obj.g_loss(G, D, real, None, 0)
    assert torch.isfinite(loss)
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    assert all(torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))


def test_latent_priors():
    g = torch.Generator().manual_seed(0)
    u = sample_latent(10_000, 4, "uniform", generator=g)
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean().item()) < 0.02
    n = sample_latent(10_000, 4, "normal", generator=g)
    assert n.std().item() == pytest.approx(1.0, abs=0.02)


def test_truncation_never_exceeds_threshold():
    g = torch.Generator().manual_seed(0)
    for t in (0.1, 0.5, 2.0):
        z = sample_latent(5000, 16, "normal", generator=g, truncation=t)
        assert z.abs().max().item() <= t
        assert z.abs().max().item() > 0.9 * t  # resampled, not clipped to zero


def test_truncation_needs_normal_prior():
    with pytest.raises(ConfigError, match="normal latent prior"):
        sample_latent(2, 3, "uniform", truncation=0.5)


def test_seeded_latents_are_device_independent():
    a = sample_latent(3, 5, "normal", generator=torch.Generator().manual_seed(7))
    b = sample_latent(3, 5, "normal", generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)

"""Virtual batch normalization (Salimans et al. 2016, Sec. 3.4): model.G.norm=virtual_batch.

What "VBN equals BatchNorm" means here, exactly:

* the reference rows are normalized with their own statistics: BatchNorm in
  training mode on the reference batch, to float precision;
* a live example x is normalized with the statistics of R ∪ {x}: BatchNorm in
  training mode on the batch [R; x], at x's row, to float precision;
* so with the reference batch being the batch itself, a live copy of a batch row
  differs from BatchNorm on the batch only by x counting twice among N + 1
  examples, a difference that shrinks like 1/N (checked at N = 16 and N = 256).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganrun import checkpoint as ckpt
from ganrun.build import build
from ganrun.errors import ConfigError
from ganrun.models import dcgan, infogan, sngan
from ganrun.models.vbn import ReferenceBatch, VirtualBatchNorm
from ganrun.training.ema import batch_norm_layers, standing_batch_norm_stats
from tests.conftest import assert_resume_is_exact, compose_config, tiny_overrides

VBN_RUN = ["model.G.norm=virtual_batch", "logger.tensorboard=false", "trainer.ema_decay=0.5"]


def _pair(features: int, image: bool, n: int):
    """A VBN layer and a BatchNorm in training mode with the same random gain and shift."""
    vbn = VirtualBatchNorm(features, n)
    bn = (nn.BatchNorm2d if image else nn.BatchNorm1d)(features).train()
    with torch.no_grad():
        vbn.weight.normal_()
        vbn.bias.normal_()
        bn.weight.copy_(vbn.weight)
        bn.bias.copy_(vbn.bias)
    return vbn, bn


@pytest.mark.parametrize("image", [False, True])
def test_vbn_is_batch_norm_on_the_reference_batch_and_on_reference_plus_x(image):
    torch.manual_seed(0)
    n, shape = 12, ((5, 3, 3) if image else (5,))
    vbn, bn = _pair(5, image, n)
    ref = torch.randn(n, *shape) * 2 + 1
    live = torch.randn(4, *shape) * 3 - 1
    out = vbn(torch.cat([ref, live]))
    assert out.shape == (n + 4, *shape)
    # the reference batch: its own statistics, i.e. BatchNorm in training mode
    assert torch.allclose(out[:n], bn(ref), atol=1e-5)
    # each live example: the statistics of R ∪ {x}
    for i in range(4):
        assert torch.allclose(out[n + i], bn(torch.cat([ref, live[i : i + 1]]))[-1], atol=1e-5)


@pytest.mark.parametrize("image", [False, True])
@torch.no_grad()
def test_vbn_with_the_batch_as_its_own_reference_approaches_batch_norm_like_1_over_n(image):
    errors = []
    for n in (16, 256):
        torch.manual_seed(1)
        shape = (3, 2, 2) if image else (3,)
        vbn, bn = _pair(3, image, n)
        batch = torch.randn(n, *shape) * 2 + 0.5
        out = vbn(torch.cat([batch, batch]))  # reference = the batch; live = the batch again
        expected = bn(batch)
        assert torch.allclose(out[:n], expected, atol=1e-5)  # the reference pass: exact
        errors.append(float((out[n:] - expected).abs().mean()))
    assert 0 < errors[1] < errors[0] / 8, errors  # 16x the examples: about 1/16 of the error


def test_a_sample_does_not_depend_on_the_rest_of_its_batch():
    torch.manual_seed(0)
    G = dcgan.Generator((1, 28, 28), z_dim=8, width=4, norm="virtual_batch", reference_size=8)
    B = dcgan.Generator((1, 28, 28), z_dim=8, width=4)
    z = G.sample_z(6)
    with torch.no_grad():
        assert torch.allclose(G(z)[:1], G(z[:1]), atol=1e-6)
        assert not torch.allclose(B(z)[:1], B(z[:1]), atol=1e-3)  # BatchNorm couples them


def test_shapes_state_and_modes():
    for shape in ((1, 28, 28), (3, 32, 32), (3, 64, 64), (2,)):
        torch.manual_seed(0)
        G = dcgan.Generator(shape, z_dim=8, width=4, norm="virtual_batch", reference_size=5)
        torch.manual_seed(0)
        B = dcgan.Generator(shape, z_dim=8, width=4)
        z = G.sample_z(3)
        assert G(z).shape == (3, *shape) and G(z[:0]).shape == (0, *shape)
        assert G.state_dict()["reference.z"].shape == (5, 8)
        assert not batch_norm_layers(G) and any(
            isinstance(m, VirtualBatchNorm) for m in G.modules()
        )
        # the same weights from the same seed: VBN changes no draw of the global RNG
        same = {k: v for k, v in B.state_dict().items() if k in G.state_dict()}
        assert same and all(torch.equal(v, G.state_dict()[k]) for k, v in same.items())
        assert sum(p.numel() for p in G.parameters()) == sum(p.numel() for p in B.parameters())
        with torch.no_grad():  # eval mode: no running statistics, the same computation
            train_out = G.train()(z)
            assert torch.equal(G.eval()(z), train_out)
    for G in (
        infogan.Generator((1, 28, 28), noise_dim=4, width=4, fc_width=8, norm="virtual_batch",
                          reference_size=4),
        sngan.Generator((3, 32, 32), z_dim=8, width=2, norm="virtual_batch", reference_size=4),
    ):  # fmt: skip
        z = G.sample_z(2)
        assert G(z).shape == (2, *G.data_shape) and G.reference.z.shape == (4, G.z_dim)
        assert not batch_norm_layers(G)


def test_the_reference_batch_comes_from_its_seed_and_leaves_the_global_rng_alone():
    def ref(seed):
        return dcgan.Generator((2,), z_dim=4, width=2, norm="virtual_batch",
                               reference_size=3, reference_seed=seed).reference.z  # fmt: skip

    assert torch.equal(ref(7), ref(7)) and not torch.equal(ref(7), ref(8))
    assert ref(7).min() >= -1 and ref(7).max() <= 1  # G's own prior (DCGAN: U(-1, 1))
    torch.manual_seed(0)
    dcgan.Generator((2,), z_dim=4, width=2, norm="virtual_batch", reference_size=3)
    after_vbn = torch.rand(1)
    torch.manual_seed(0)
    dcgan.Generator((2,), z_dim=4, width=2)
    assert torch.equal(after_vbn, torch.rand(1))
    with pytest.raises(ValueError, match="do not match the reference"):
        ReferenceBatch(torch.zeros(3, 4)).prepend(torch.zeros(2, 5))


def test_the_recipe_yaml_passes_batch_size_and_seed():
    cfg = compose_config(tiny_overrides("dcgan", "mnist_embedded", "model.G.norm=virtual_batch",
                                        "seed=5"))  # fmt: skip
    built = build(cfg)
    assert built.G.reference.size == cfg.trainer.batch_size == 16
    assert torch.equal(
        built.G.reference.z,
        dcgan.Generator((1, 28, 28), z_dim=16, width=8, norm="virtual_batch",
                        reference_size=16, reference_seed=5).reference.z,
    )  # fmt: skip


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["model.G.norm=group"],
            "model.G.norm='group' is not valid; choose from batch, virtual_batch",
        ),
        (["model.G.norm=virtual_batch", "model.G.reference_size=0"], "reference_size must be >= 1"),
        (["model=wgan_gp", "model.G.norm=instance"], "model.G.norm='instance' is not valid"),
    ],
)
def test_invalid_options_are_one_line(overrides, message):
    cfg = compose_config([*tiny_overrides("dcgan", "mnist_embedded"), *overrides])
    with pytest.raises(ConfigError, match=message) as e:
        build(cfg)
    assert "\n" not in str(e.value)


def test_train_resume_is_exact_and_g_ema_uses_its_own_reference_statistics(tmp_path):
    overrides = tiny_overrides("dcgan", "mnist_embedded", *VBN_RUN, "trainer.n_fixed=2")
    assert_resume_is_exact(tmp_path, overrides, steps=4, split=2)
    state = ckpt.load(tmp_path / "straight")[1]
    G = dcgan.Generator((1, 32, 32), z_dim=16, width=8, norm="virtual_batch", reference_size=16)
    ema = dcgan.Generator((1, 32, 32), z_dim=16, width=8, norm="virtual_batch", reference_size=16)
    G.load_state_dict(state["models"]["G"])
    ema.load_state_dict(state["models"]["G_ema"])
    assert torch.equal(G.reference.z, ema.reference.z)  # one reference batch, checkpointed
    z = G.sample_z(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = ema.eval()(z)
        # nothing for standing statistics to do: VBN keeps no running statistics
        assert not standing_batch_norm_stats(ema, batch_size=4, seed=0, device=torch.device("cpu"))
        assert torch.equal(ema(z), before)
        assert not torch.allclose(G.eval()(z), before)  # other weights, other statistics
        assert torch.isfinite(before).all()

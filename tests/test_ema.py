"""The EMA of G: averaged weights get BatchNorm statistics and spectral-norm
vectors of their own."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ganrun import checkpoint as ckpt
from ganrun.models import layers
from ganrun.models.vanilla import Generator
from ganrun.training.ema import (
    batch_norm_layers,
    copied_buffers,
    spectral_norm_vectors,
    spectral_norms,
    standing_batch_norm_stats,
    standing_stats_seed,
    update_ema,
)
from tests.conftest import run_train, tiny_overrides

CPU = torch.device("cpu")


def _bn_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator((2,), z_dim=2, width=32, depth=2, batch_norm=True, init_std=0.3)
    G.train()
    with torch.no_grad():  # give the live G running statistics of its own
        for _ in range(20):
            G(torch.randn(256, 2))
    return G


def test_update_ema_averages_weights_and_leaves_batch_norm_statistics_alone():
    G = _bn_generator()
    ema = copy.deepcopy(G)
    before = [b.clone() for m in batch_norm_layers(ema) for b in m.buffers(recurse=False)]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
        for m in batch_norm_layers(G):
            m.running_mean.add_(5.0)
    update_ema(ema, G, beta=0.75)
    for pe, pg in zip(ema.parameters(), G.parameters()):
        torch.testing.assert_close(pe, pg - 0.75)  # 0.75 (pg - 1) + 0.25 pg
    after = [b for m in batch_norm_layers(ema) for b in m.buffers(recurse=False)]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_update_ema_copies_buffers_that_are_not_batch_norm_statistics():
    class WithBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("u", torch.zeros(3))  # e.g. StyleGAN's w_avg

    model, ema = WithBuffer(), WithBuffer()
    model.u.fill_(7.0)
    update_ema(ema, model, beta=0.9)
    assert torch.equal(ema.u, model.u)


def test_standing_statistics_are_the_weights_own():
    """Averaged weights with the live G's statistics give wrong eval-mode outputs;
    with standing statistics eval mode matches what a large batch gives."""
    G = _bn_generator()
    ema = copy.deepcopy(G)
    with torch.no_grad():  # weights that have drifted from the live G's
        ema.net[0].weight.mul_(3.0)
        ema.net[3].weight.mul_(0.3)
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batch_stats = copy.deepcopy(ema).train()(z)  # the weights' own statistics
        stale = ema.eval()(z)
        assert standing_batch_norm_stats(ema, batch_size=500, seed=3, device=CPU)
        fresh = ema.eval()(z)
    stale_err = (stale - batch_stats).abs().mean()
    fresh_err = (fresh - batch_stats).abs().mean()
    assert fresh_err < 0.1 * stale_err
    assert fresh_err < 0.05 * batch_stats.abs().mean()


def test_standing_statistics_are_deterministic_and_leave_everything_else_as_it_was():
    G = _bn_generator()
    G.eval()
    G.net[0].train()  # a mixed state must come back as it was
    momenta = [m.momentum for m in batch_norm_layers(G)]
    rng = torch.get_rng_state()
    standing_batch_norm_stats(G, batch_size=64, seed=5, device=CPU, batches=4)
    first = [m.running_var.clone() for m in batch_norm_layers(G)]
    standing_batch_norm_stats(G, batch_size=64, seed=5, device=CPU, batches=4)
    assert all(torch.equal(a, m.running_var) for a, m in zip(first, batch_norm_layers(G)))
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.momentum for m in batch_norm_layers(G)] == momenta
    assert [m.training for m in G.modules()] == [
        m is G.net[0] for m in G.modules()
    ]  # only the layer that was in train mode


def test_standing_statistics_average_the_batches():
    """running mean = mean of the per-batch means; running var = mean of the
    per-batch unbiased variances (what eval mode then normalizes with)."""
    torch.manual_seed(0)
    G = Generator((2,), z_dim=2, width=8, depth=1, batch_norm=True)
    bn = batch_norm_layers(G)[0]
    standing_batch_norm_stats(G, batch_size=32, seed=9, device=CPU, batches=3)
    g = torch.Generator().manual_seed(9)
    pre = [G.net[0](G.sample_z(32, generator=g)).detach() for _ in range(3)]
    torch.testing.assert_close(bn.running_mean, torch.stack([h.mean(0) for h in pre]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([h.var(0) for h in pre]).mean(0))


def test_without_batch_norm_nothing_happens():
    G = Generator((2,), z_dim=2, width=8, depth=1)
    assert standing_batch_norm_stats(G, batch_size=8, seed=0, device=CPU) is False


def test_a_stored_g_ema_carries_statistics_of_its_own_weights(tmp_path):
    """The checkpoint's G_ema (what sample/eval load) has standing statistics, not G's."""
    run_train(
        tmp_path,
        tiny_overrides(
            "pacgan_mlp", "grid", "trainer.ema_decay=0.9", "trainer.steps=4", "trainer.n_fixed=8"
        ),
    )
    _, state = ckpt.load(tmp_path)
    g, e = state["models"]["G"], state["models"]["G_ema"]
    stats = [k for k in e if k.endswith("running_var")]
    assert stats and all(not torch.equal(g[k], e[k]) for k in stats)
    G = Generator((2,), z_dim=2, width=16, depth=4, batch_norm=True)
    G.load_state_dict(e)
    standing_batch_norm_stats(
        G,
        batch_size=int(state["config"]["trainer"]["batch_size"]),
        seed=standing_stats_seed(state["config"]["seed"]),
        device=CPU,
    )
    for k in stats:
        torch.testing.assert_close(G.state_dict()[k], e[k])


class _SNNet(nn.Module):
    """Spectral-norm layers of three shapes (wide, tall, conv); no forward needed."""

    def __init__(self):
        super().__init__()
        self.a = layers.linear(6, 12, use_sn=True)
        self.b = layers.linear(12, 5, use_sn=True)
        self.c = layers.conv3x3(3, 4, use_sn=True)

    def track(self, steps: int = 20) -> None:
        """What training does to the live G's vectors: one power iteration per pass."""
        self.train()
        for _ in range(steps):
            for m in (self.a, self.b, self.c):
                m.weight  # noqa: B018 (the parametrization runs its power iteration)


def _normalized_norms(net: nn.Module) -> list[float]:
    """Largest singular value of each layer's eval-mode weight W / sigma_estimate."""
    net.eval()
    return [
        float(torch.linalg.matrix_norm(p._reshape_weight_to_matrix(plist().detach()), ord=2))
        for p, plist in spectral_norms(net)
    ]


def test_g_ema_divides_by_the_spectral_norm_of_its_own_weights():
    """G_ema with the live G's power-iteration vectors underestimates sigma(W_ema)
    (eval mode runs no iteration); after the standing statistics it is exact."""
    torch.manual_seed(0)
    G, ema = _SNNet(), _SNNet()  # the EMA lags: other weights than the live G's
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(3.0).add_(torch.randn_like(p))
    G.track()
    vectors = [(p._u.clone(), p._v.clone()) for p, _ in spectral_norms(ema)]
    update_ema(ema, G, beta=0.5)
    for (u, v), (p, _) in zip(vectors, spectral_norms(ema)):
        assert torch.equal(p._u, u) and torch.equal(p._v, v)  # not the live G's
    assert standing_batch_norm_stats(ema, batch_size=8, seed=0, device=CPU)  # SN, no BN
    for norm in _normalized_norms(ema):
        assert abs(norm - 1.0) < 1e-3


def test_spectral_norm_vectors_depend_on_the_weights_alone():
    """Same weights, any previous vectors: the same bits (a resumed run recomputes the
    uninterrupted run's numbers), and the global RNG is not touched."""
    torch.manual_seed(1)
    net = _SNNet()
    rng = torch.get_rng_state()
    assert spectral_norm_vectors(net)
    first = [(p._u.clone(), p._v.clone()) for p, _ in spectral_norms(net)]
    with torch.no_grad():
        for p, _ in spectral_norms(net):
            p._u.copy_(torch.nn.functional.normalize(torch.randn_like(p._u), dim=0))
            p._v.copy_(torch.nn.functional.normalize(torch.randn_like(p._v), dim=0))
    rng = torch.get_rng_state()
    spectral_norm_vectors(net)
    assert torch.equal(torch.get_rng_state(), rng)
    for (u, v), (p, _) in zip(first, spectral_norms(net)):
        assert torch.equal(p._u, u) and torch.equal(p._v, v)
    assert not spectral_norm_vectors(Generator((2,), z_dim=2, width=8, depth=1))


def test_non_finite_weights_give_non_finite_vectors_not_an_error():
    """A diverged G_ema is the divergence guard's to report, not a LinAlgError's."""
    net = _SNNet()
    with torch.no_grad():
        net.b.parametrizations.weight.original.fill_(float("nan"))
    assert spectral_norm_vectors(net)
    p = next(q for q, pl in spectral_norms(net) if pl is net.b.parametrizations.weight)
    assert torch.isnan(p._u).all() and torch.isnan(p._v).all()
    assert all(torch.isfinite(q._u).all() for q, _ in spectral_norms(net) if q is not p)


def test_update_ema_copies_no_spectral_norm_vector():
    G, ema = _SNNet(), _SNNet()
    own = {id(b) for p, _ in spectral_norms(ema) for b in (p._u, p._v)}
    assert own and not own & {id(be) for be, _ in copied_buffers(ema, G)}


def test_a_stored_sagan_g_ema_carries_spectral_norm_vectors_of_its_own_weights(tmp_path):
    """What sample/eval load: G_ema's vectors are its own, and its layers have norm 1."""
    run_train(
        tmp_path,
        tiny_overrides(
            "sagan", "fake", "dataset.size=16", "dataset.resolution=32",
            "trainer.ema_decay=0.9", "trainer.steps=2", "trainer.batch_size=4",
        ),
    )  # fmt: skip
    from ganrun.commands.sample import load_generator

    _, state = ckpt.load(tmp_path)
    g, e = state["models"]["G"], state["models"]["G_ema"]
    vectors = [k for k in e if k.endswith(("._u", "._v"))]
    assert vectors and any(not torch.equal(g[k], e[k]) for k in vectors)
    G, _, _ = load_generator(tmp_path, CPU)
    for norm in _normalized_norms(G):
        assert abs(norm - 1.0) < 1e-3
    spectral_norm_vectors(G)  # the stored vectors are the ones of G_ema's weights
    for k in vectors:
        torch.testing.assert_close(G.state_dict()[k], e[k])

"""The EMA of G: averaged weights get BatchNorm statistics of their own."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ganrun import checkpoint as ckpt
from ganrun.models.vanilla import Generator
from ganrun.training.ema import (
    batch_norm_layers,
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
            self.register_buffer("u", torch.zeros(3))  # e.g. a spectral-norm vector

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

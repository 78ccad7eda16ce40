"""Exponential moving average of G's weights (Yazici et al. 2019; Karras et al.
2018 keep one for every figure).

BatchNorm statistics are not averaged or copied: the live G's running mean and
variance describe the live G's activations, not those of the averaged weights,
and with a long horizon the two differ completely (on the 25-Gaussian grid an
EMA at decay 0.9999 carrying G's statistics put no point near any mode, while
the same weights with their own statistics covered 13-25 of them). Before
G_ema is used, ``standing_batch_norm_stats`` recomputes its statistics from
its own forward passes: the "standing statistics" of BigGAN's released code
(Brock et al. 2019, BigGAN-PyTorch ``accumulate_standing_stats``). Other
buffers (spectral-norm vectors, StyleGAN's tracked w average) are copied.
"""

from __future__ import annotations

import torch
from torch import nn

from ganrun.rng import fork_rng

# Batches of G's own forward passes that give G_ema its BatchNorm statistics.
STANDING_STATS_BATCHES = 16


def standing_stats_seed(run_seed: int) -> int:
    """The latent seed of a run's standing statistics (fixed per run, so a resumed
    run recomputes exactly the numbers an uninterrupted one does)."""
    return int(run_seed) * 7919 + 29


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def copied_buffers(ema: nn.Module, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ema buffer, model buffer) pairs update_ema copies: every buffer but BatchNorm
    statistics. The trainer computes them once and passes them to every update."""
    stats = {id(b) for m in batch_norm_layers(ema) for b in m.buffers(recurse=False)}
    return [(be, bm) for be, bm in zip(ema.buffers(), model.buffers()) if id(be) not in stats]


@torch.no_grad()
def update_ema(
    ema: nn.Module,
    model: nn.Module,
    beta: float,
    buffers: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> None:
    """ema <- beta * ema + (1 - beta) * model, parameter by parameter; the buffers of
    ``copied_buffers(ema, model)`` (pass them in to skip the search for BatchNorm layers) are copied."""
    e_params = [p for p in ema.parameters()]
    m_params = [p.detach() for p in model.parameters()]
    if e_params:
        torch._foreach_lerp_(e_params, m_params, 1.0 - beta)
    for be, bm in copied_buffers(ema, model) if buffers is None else buffers:
        be.copy_(bm)


@torch.no_grad()
def copy_weights(dst: nn.Module, src: nn.Module) -> None:
    """dst <- src, parameters and every buffer (statistics included: same weights)."""
    for pd, ps in zip(dst.parameters(), src.parameters()):
        pd.copy_(ps)
    for bd, bs in zip(dst.buffers(), src.buffers()):
        bd.copy_(bs)


@torch.no_grad()
def standing_batch_norm_stats(
    G: nn.Module,
    *,
    batch_size: int,
    seed: int,
    device: torch.device,
    batches: int = STANDING_STATS_BATCHES,
) -> bool:
    """Replace G's BatchNorm running statistics by the average over ``batches``
    forward passes of ``batch_size`` fresh latents (and uniform labels when G is
    conditional), drawn from a generator seeded with ``seed``: the same numbers
    every time for the same weights, and the global RNG is left untouched. Only
    the BatchNorm layers run in training mode. Returns False (and does nothing)
    when G has no BatchNorm."""
    layers = batch_norm_layers(G)
    if not layers:
        return False
    modes = [(m, m.training) for m in G.modules()]
    momenta = [m.momentum for m in layers]
    nc = int(getattr(G, "num_classes", 0) or 0)
    g = torch.Generator().manual_seed(int(seed))
    try:
        with fork_rng(device):
            G.eval()
            for m in layers:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the passes
                m.train()
            for _ in range(int(batches)):
                z = G.sample_z(batch_size, device=device, generator=g)
                c = torch.randint(0, nc, (batch_size,), generator=g).to(device) if nc else None
                G(z, c)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        for m, training in modes:
            m.training = training
    return True

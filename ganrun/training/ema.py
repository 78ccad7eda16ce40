"""Exponential moving average of G's weights (Yazici et al. 2019; Karras et al.
2018 keep one for every figure).

BatchNorm statistics are not averaged or copied: the live G's running mean and
variance describe the live G's activations, not those of the averaged weights,
and with a long horizon the two differ completely (on the 25-Gaussian grid an
EMA at decay 0.9999 carrying G's statistics put no point near any mode, while
the same weights with their own statistics covered 13-25 of them). Before
G_ema is used, ``standing_batch_norm_stats`` recomputes its statistics from
its own forward passes: the "standing statistics" of BigGAN's released code
(Brock et al. 2019, BigGAN-PyTorch ``accumulate_standing_stats``).

Spectral-norm vectors are not copied either. torch's spectral norm divides W by
sigma = u^T W v with u, v kept as buffers and refined by one power iteration per
training-mode forward pass; G_ema only runs in eval mode, so it would divide its
averaged W by a sigma measured with vectors of the live G's W, which
underestimates sigma(W_ema) (a 2-channel SAGAN G whose EMA lagged its G gave
layers of spectral norm up to 1.066 instead of 1). ``spectral_norm_vectors`` sets
each u, v to the top singular pair of the averaged weight, as a function of the
weight alone, and ``standing_batch_norm_stats`` calls it first. Other buffers
(StyleGAN's tracked w average) are copied.
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


def spectral_norms(module: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(spectral-norm parametrization, its ParametrizationList) for every weight of
    ``module`` under ``torch.nn.utils.parametrizations.spectral_norm`` that keeps
    power-iteration vectors (1-D weights have none)."""
    found = []
    for m in module.modules():
        for plist in getattr(m, "parametrizations", {}).values():
            found += [(p, plist) for p in plist if _is_spectral_norm(p)]
    return found


def _is_spectral_norm(p: nn.Module) -> bool:
    return hasattr(p, "_u") and hasattr(p, "_v") and hasattr(p, "_reshape_weight_to_matrix")


def own_buffers(ema: nn.Module) -> set[int]:
    """ids of G_ema's buffers that describe its own weights and are never copied from G:
    BatchNorm statistics and spectral-norm vectors."""
    ids = {id(b) for m in batch_norm_layers(ema) for b in m.buffers(recurse=False)}
    return ids | {id(b) for p, _ in spectral_norms(ema) for b in (p._u, p._v)}


def copied_buffers(ema: nn.Module, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ema buffer, model buffer) pairs update_ema copies: every buffer but BatchNorm
    statistics and spectral-norm vectors (``own_buffers``). The trainer computes them
    once and passes them to every update."""
    own = own_buffers(ema)
    return [(be, bm) for be, bm in zip(ema.buffers(), model.buffers()) if id(be) not in own]


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
def spectral_norm_vectors(G: nn.Module) -> bool:
    """Set every spectral-norm layer's u, v to the top left/right singular vectors of
    its current weight, so that eval mode divides W by sigma(W) itself (to float
    precision), not by an estimate made with another matrix's vectors.

    The pair comes from ``torch.linalg.eigh`` of the smaller Gram matrix (W W^T or
    W^T W) in float64: a function of the weight alone — the vectors held before do
    not enter — so the result is the same whatever was computed earlier (a resumed
    run gets the uninterrupted run's numbers) and the global RNG is not touched.
    The cost is one Gram product per layer (m^2 n for an m x n weight, m <= n).
    Returns False when G has no spectral norm."""
    found = spectral_norms(G)
    for p, plist in found:
        weight = plist.original
        for q in plist:  # the input of ``p``: the parametrizations before it applied
            if q is p:
                break
            weight = q(weight)
        W = p._reshape_weight_to_matrix(weight).detach().double()
        h, w = W.shape
        try:
            if h <= w:
                u = torch.linalg.eigh(W @ W.T).eigenvectors[:, -1]
                v = torch.nn.functional.normalize(W.T @ u, dim=0, eps=p.eps)
            else:
                v = torch.linalg.eigh(W.T @ W).eigenvectors[:, -1]
                u = torch.nn.functional.normalize(W @ v, dim=0, eps=p.eps)
        except torch.linalg.LinAlgError:  # non-finite weights: leave them to the divergence guard
            u, v = torch.full_like(p._u, float("nan")), torch.full_like(p._v, float("nan"))
        p._u.copy_(u)
        p._v.copy_(v)
    return bool(found)


@torch.no_grad()
def standing_batch_norm_stats(
    G: nn.Module,
    *,
    batch_size: int,
    seed: int,
    device: torch.device,
    batches: int = STANDING_STATS_BATCHES,
) -> bool:
    """G's own statistics, for averaged weights: first its spectral-norm vectors
    (``spectral_norm_vectors``), then its BatchNorm running statistics, replaced by
    the average over ``batches`` forward passes of ``batch_size`` fresh latents
    (and uniform labels when G is conditional), drawn from a generator seeded with
    ``seed``: the same numbers every time for the same weights, and the global RNG
    is left untouched. Only the BatchNorm layers run in training mode. Returns
    False (and does nothing) when G has neither spectral norm nor BatchNorm."""
    sn = spectral_norm_vectors(G)
    layers = batch_norm_layers(G)
    if not layers:
        return sn
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

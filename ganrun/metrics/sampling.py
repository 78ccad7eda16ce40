"""Drawing a fixed, seeded set of samples from a generator for evaluation: the one
sampler behind IS/FID/KID/precision-recall and the mode counts."""

from __future__ import annotations

import torch

from ganrun.models.base import truncation_args
from ganrun.rng import fork_rng


def generate(
    G: torch.nn.Module,
    n: int,
    *,
    device: torch.device,
    seed: int,
    batch_size: int,
    truncation: float | None = None,
) -> torch.Tensor:
    """``n`` samples from G (eval mode, fixed seed, balanced labels when conditional),
    on the CPU, leaving the global RNG and G's mode untouched. ``truncation`` acts
    where G says it does (``G.truncation_args``): BigGAN's |z| threshold when
    drawing z, StyleGAN's psi on w inside G."""
    trunc, g_kwargs = truncation_args(G, truncation)
    was = G.training
    g = torch.Generator().manual_seed(seed)
    nc = int(getattr(G, "num_classes", 0) or 0)
    out = []
    with fork_rng(device), torch.no_grad():
        G.eval()
        try:
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                z = G.sample_z(b, device=device, generator=g, truncation=trunc)
                c = (torch.arange(start, start + b, device=device) % nc) if nc else None
                out.append(G(z, c, **g_kwargs).float().cpu())
        finally:
            G.train(was)
    return torch.cat(out)

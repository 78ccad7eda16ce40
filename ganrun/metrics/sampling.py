"""Drawing a fixed, seeded set of samples from a generator for evaluation: the one
sampler behind IS/FID/KID/precision-recall and the mode counts."""

from __future__ import annotations

import torch

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
    on the CPU, leaving the global RNG and G's mode untouched."""
    was = G.training
    g = torch.Generator().manual_seed(seed)
    nc = int(getattr(G, "num_classes", 0) or 0)
    out = []
    with fork_rng(device), torch.no_grad():
        G.eval()
        try:
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                z = G.sample_z(b, device=device, generator=g, truncation=truncation)
                c = (torch.arange(start, start + b, device=device) % nc) if nc else None
                out.append(G(z, c).float().cpu())
        finally:
            G.train(was)
    return torch.cat(out)

"""Drawing random numbers without disturbing training's: pictures, evaluation
samples and G_ema's standing statistics all run inside ``fork_rng(device)``."""

from __future__ import annotations

import torch


def fork_rng(device: torch.device):
    """torch.random.fork_rng over the CPU generator and, on CUDA, ``device``'s."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])

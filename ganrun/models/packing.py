"""PacGAN packing — Lin et al. 2018, "PacGAN: The power of two samples in
generative adversarial networks" (arXiv:1712.04086), Sec. 3.

A packed discriminator judges ``m`` samples at once: ``m`` independent samples,
all real or all generated, are concatenated along channels (images) or features
(points) and D returns one logit for the pack. Only D's input layer changes (it
sees ``m`` times the channels/features); the loss is unchanged and averages over
the B/m packs of a batch of B samples, so no other part of ganrun knows about it.
"""

from __future__ import annotations

import torch

from ganrun.errors import ConfigError


def check_pack(pack: int) -> int:
    if pack < 1:
        raise ConfigError(f"model.D.pack must be >= 1 (1 = no packing), got {pack}")
    return int(pack)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """(B, C, ...) -> (B/m, m*C, ...): consecutive samples become one packed sample.

    Consecutive samples of a batch are independent draws (fresh z for fakes, a
    shuffled or freshly drawn batch for reals), so grouping neighbours is the
    same as drawing each pack from the product distribution P^m (Sec. 3).
    """
    if pack == 1:
        return x
    b = x.shape[0]
    if b % pack:
        raise ConfigError(
            f"model.D.pack={pack} needs a batch divisible by {pack}, got {b} samples: "
            f"set trainer.batch_size to a multiple of {pack}"
        )
    return x.reshape(b // pack, pack * x.shape[1], *x.shape[2:])

"""Minibatch discrimination — Salimans et al. 2016, "Improved Techniques for
Training GANs", Sec. 3.2.

For D's features f(x_i) in R^A and a learned tensor T in R^{A x B x C}:
M_i = f(x_i) T in R^{B x C};  c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_L1);
o(x_i)_b = sum_j c_b(x_i, x_j);  the layer outputs [f(x_i), o(x_i)] in R^{A+B},
which D's head reads. D sees how close each sample is to the others in its
minibatch, so a generator collapsing to few modes becomes easy to spot.

An architecture option, not a regularizer: ``model.D.minibatch_features=B`` (> 0)
inserts the layer before D's head (dcgan, vanilla and cgan D). Real and generated
samples go through D in separate minibatches, as in the paper's code.

Deviations: T starts from N(0, 0.05^2) like the reference code's theta, but
without its weight normalization (per-kernel scale) or the bias on o; the sum
over j includes j = i (a constant +1 per feature, as the paper's formula reads;
the reference code leaves it out). C (``kernel_dims``) = 5 as in that code.

``model.D.minibatch_mean=true`` averages over j instead of summing (o_b in (0, 1], not
(0, N]): ganrun's option, not the paper's. The reference code keeps o small at the start
with its data-dependent init (T scaled so the nearest neighbour is ~2 away, o's bias set
to minus its initial mean), which ganrun does not have; with the plain sum, o starts near
the batch size and cgan's SGD at lr 0.05 diverges within 50 steps (docs/RESULTS.md).
"""

from __future__ import annotations

import torch
from torch import nn

from ganrun.errors import ConfigError


class MinibatchDiscrimination(nn.Module):
    def __init__(
        self, in_features: int, out_features: int, kernel_dims: int = 5, mean: bool = False
    ):
        super().__init__()
        self.mean = bool(mean)
        if in_features < 1 or out_features < 1 or kernel_dims < 1:
            raise ConfigError(
                f"minibatch discrimination needs positive sizes, got A={in_features}, "
                f"B={out_features}, C={kernel_dims}"
            )
        self.in_features, self.out_features, self.kernel_dims = (
            in_features,
            out_features,
            kernel_dims,
        )
        self.T = nn.Parameter(torch.randn(in_features, out_features * kernel_dims) * 0.05)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """(N, A) -> (N, A + B)."""
        n = f.shape[0]
        M = (f @ self.T).view(n, self.out_features, self.kernel_dims).transpose(0, 1)  # (B, N, C)
        l1 = torch.cdist(M, M, p=1)  # (B, N, N): L1 distances between rows, per kernel b
        c = torch.exp(-l1)
        o = (c.mean(dim=2) if self.mean else c.sum(dim=2)).T  # (N, B)
        return torch.cat([f, o], dim=1)

    def extra_repr(self) -> str:
        reduce = "mean" if self.mean else "sum"
        return f"A={self.in_features}, B={self.out_features}, C={self.kernel_dims}, {reduce} over j"


class MinibatchHead(nn.Module):
    """A D head with minibatch discrimination: flatten D's last features (N, A),
    append o(x) (N, B), then one linear unit -> (N, 1). Stands in for D's plain head
    when ``model.D.minibatch_features`` > 0."""

    def __init__(
        self, in_features: int, minibatch_features: int, kernel_dims: int = 5, mean: bool = False
    ):
        super().__init__()
        self.minibatch = MinibatchDiscrimination(in_features, minibatch_features, kernel_dims, mean)
        self.linear = nn.Linear(in_features + minibatch_features, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(self.minibatch(h.flatten(1)))


def check_minibatch_features(value: int, mean: bool = False) -> int:
    """``model.D.minibatch_features`` as an int; refuses a negative count and
    ``minibatch_mean=true`` without features (it would silently do nothing)."""
    if value < 0:
        raise ConfigError(f"model.D.minibatch_features must be >= 0 (0 = off), got {value}")
    if mean and not value:
        raise ConfigError(
            "model.D.minibatch_mean=true needs model.D.minibatch_features > 0 "
            "(it averages the minibatch features; with 0 there are none)"
        )
    return int(value)

"""Virtual batch normalization — Salimans et al. 2016, "Improved Techniques for
Training GANs" (arXiv:1606.03498), Sec. 3.4.

"Each example x is normalized based on the statistics collected on a reference
batch of examples that are chosen once and fixed at the start of training, and
on x itself. The reference batch is normalized using only its own statistics."

What that means here, per normalized feature (a channel; for images the
statistics also run over the pixels, as BatchNorm's do):

* The reference batch is a fixed set of N latents ``R`` (``ReferenceBatch``, a
  buffer of G: chosen once, from a generator seeded with ``reference_seed``, and
  saved in G's state dict, so a resumed run and ``ganrun sample`` see the same
  batch). Its activations h(R) change as G's weights change: the fixed thing is
  the batch of inputs, as in the authors' code (openai/improved-gan, ImageNet
  model: a non-trainable reference z, run through G at every step).
* The reference rows are normalized with their own mean and biased variance
  over (N, H, W): exactly BatchNorm in training mode on that batch.
* A live example x is normalized with the statistics of the N + 1 examples
  R ∪ {x}: mean m = (N m_R + m_x) / (N + 1) and variance
  v = (N (v_R + (m_R - m)^2) + v_x + (m_x - m)^2) / (N + 1), where m_x, v_x
  are x's own mean and variance over its pixels (0 for vector features). This is
  the authors' code's ``new_coeff = 1 / (N + 1)`` weighting of x against the
  reference moments, written in the numerically safer pooled-variance form; it
  equals BatchNorm (training mode, biased variance) applied to the batch
  ``[R; x]`` at x's row (tests/test_vbn.py checks exactly this).
* Then the usual per-channel gain and shift (``weight``, ``bias``).

So a sample's output depends on itself and the fixed reference batch only, never
on the other samples it was drawn with, which is the point (Sec. 3.4: BatchNorm
makes "the output of a neural network for an input example x ... highly
dependent on several other inputs x' in the same minibatch"). Gradients flow
through the reference statistics, as in the authors' code.

How G runs it: ``G(z)`` prepends the reference latents to its batch, runs its
network once on the N + B rows and returns the last B. Every VirtualBatchNorm
layer takes its first N rows as the reference. Convolutions and linear layers
treat rows independently, so this is the paper's two forward passes in one call.
The cost is that pass: every G call (each D step and G step, every picture and
evaluation batch) also computes the N reference rows, about twice G's compute
at N = the batch size — "computationally expensive", as Sec. 3.4 says, which is
why the paper uses it in G only.

Train and eval mode compute the same thing: there are no running statistics to
switch to (the reference batch is the statistic), so ``G.eval()`` changes
nothing here and a G_ema with VBN needs no "standing statistics"
(``ganrun.training.ema.standing_batch_norm_stats`` finds no BatchNorm layer in
it): its reference statistics are always those of its own averaged weights.

Statistics are computed in float32 whatever the input's dtype (as BatchNorm
under autocast), and the output is cast back.
"""

from __future__ import annotations

import torch
from torch import nn

from ganrun.errors import ConfigError

# ``model.G.norm`` of the generators that offer it
G_NORMS = ("batch", "virtual_batch")


def check_norm(norm: str, reference_size: int) -> None:
    if norm not in G_NORMS:
        raise ConfigError(f"model.G.norm={norm!r} is not valid; choose from {', '.join(G_NORMS)}")
    if norm == "virtual_batch" and int(reference_size) < 1:
        raise ConfigError(
            f"model.G.reference_size must be >= 1 with model.G.norm=virtual_batch, got {reference_size}"
        )


def reference_generator(reference_seed: int) -> torch.Generator:
    """The CPU generator the reference latents are drawn from. The seed is offset
    so that the batch is not the first draws of the run seed's own streams (the
    fixed progress-grid latents, for one, come from a generator seeded with it)."""
    return torch.Generator().manual_seed((int(reference_seed) * 1_000_003 + 0x5B4E) % 2**63)


class ReferenceBatch(nn.Module):
    """The fixed reference latents of virtual batch normalization, a buffer (so
    in G's state dict: checkpointed, loaded on resume and by ``ganrun sample``)."""

    def __init__(self, latents: torch.Tensor):
        super().__init__()
        self.register_buffer("z", latents.detach().clone())

    @property
    def size(self) -> int:
        return int(self.z.shape[0])

    def prepend(self, z: torch.Tensor) -> torch.Tensor:
        """[reference latents; z]: the batch G's network runs on."""
        if z.shape[1:] != self.z.shape[1:]:
            raise ValueError(
                f"latents of shape {tuple(z.shape)} do not match the reference batch's "
                f"{tuple(self.z.shape)}"
            )
        return torch.cat([self.z.to(z.dtype), z])

    def live(self, x: torch.Tensor) -> torch.Tensor:
        """G's output without the reference rows."""
        return x[self.size :]

    def extra_repr(self) -> str:
        return f"size={self.size}, latent_dim={self.z.shape[1]}"


def make_reference(G: nn.Module, size: int, reference_seed: int) -> ReferenceBatch:
    """N latents from G's own prior (``G.sample_z``), drawn on the CPU from
    ``reference_generator(reference_seed)``: the same batch on every device."""
    return ReferenceBatch(G.sample_z(int(size), generator=reference_generator(reference_seed)))


class VirtualBatchNorm(nn.Module):
    """Virtual batch normalization of (B, C) or (B, C, H, W) activations whose first
    ``reference_size`` rows are the reference batch's (see the module docstring)."""

    def __init__(self, num_features: int, reference_size: int, eps: float = 1e-5):
        super().__init__()
        if reference_size < 1:
            raise ConfigError(f"model.G.reference_size must be >= 1, got {reference_size}")
        self.num_features, self.reference_size, self.eps = (
            int(num_features),
            int(reference_size),
            float(eps),
        )
        self.weight = nn.Parameter(torch.ones(self.num_features))
        self.bias = nn.Parameter(torch.zeros(self.num_features))

    def _affine(self, h: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (h.dim() - 2)
        return h * self.weight.view(shape) + self.bias.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(
                f"VirtualBatchNorm({self.num_features}) expects (B, {self.num_features}) or "
                f"(B, {self.num_features}, H, W), got {tuple(x.shape)}"
            )
        n = self.reference_size
        if x.shape[0] < n:
            raise ValueError(
                f"VirtualBatchNorm needs the {n} reference rows first in its batch, got "
                f"{x.shape[0]} rows (G.forward prepends them)"
            )
        h = x.float()
        pixels = tuple(range(2, h.dim()))  # () for vector features
        ref, live = h[:n], h[n:]
        var_r, mean_r = torch.var_mean(ref, dim=(0, *pixels), unbiased=False, keepdim=True)
        out = [(ref - mean_r) * torch.rsqrt(var_r + self.eps)]
        if live.shape[0]:
            if pixels:
                var_x, mean_x = torch.var_mean(live, dim=pixels, unbiased=False, keepdim=True)
            else:
                var_x, mean_x = torch.zeros_like(live), live
            # the moments of R ∪ {x}: x counts as one example beside the N of R
            mean = (n * mean_r + mean_x) / (n + 1)
            var = (n * (var_r + (mean_r - mean) ** 2) + var_x + (mean_x - mean) ** 2) / (n + 1)
            out.append((live - mean) * torch.rsqrt(var + self.eps))
        return self._affine(torch.cat(out)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, reference_size={self.reference_size}, eps={self.eps}"


def run(reference: ReferenceBatch | None, net, z: torch.Tensor) -> torch.Tensor:
    """``net(z)``; with a reference batch, ``net`` runs on [reference; z] and the
    reference rows are dropped from its output."""
    if reference is None:
        return net(z)
    return reference.live(net(reference.prepend(z)))


def norm_layer(kind: str, features: int, reference_size: int, image: bool) -> nn.Module:
    """G's normalization layer for ``model.G.norm``: BatchNorm (1d or 2d) or VBN."""
    if kind == "virtual_batch":
        return VirtualBatchNorm(features, reference_size)
    return nn.BatchNorm2d(features) if image else nn.BatchNorm1d(features)

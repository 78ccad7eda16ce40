"""BigGAN — Brock, Donahue & Simonyan 2018, "Large Scale GAN Training for High
Fidelity Natural Image Synthesis" (arXiv:1809.11096).

Class-conditional SAGAN-style ResNet G and D (Sec. 3, App. B, Fig. 15) with:

* a **shared class embedding** (one table in G, 128-d) instead of a separate
  class table per BatchNorm (Sec. 3, "shared embedding");
* **hierarchical z** (Sec. 3, "skip-z"): z is split into one chunk per G block
  plus one for the input layer; each block's conditional BatchNorm gets
  [shared embedding, its z chunk] through linear gain and bias maps (App. B,
  Fig. 15b: gain = 1 + W_g c, bias = W_b c);
* a projection discriminator (Miyato & Koyama 2018), spectral norm in G and D,
  one self-attention (non-local) block in each, orthogonal initialisation
  (App. C), and the truncation trick at sample time (Sec. 3.1): ``sample_z``
  resamples every |z| above the threshold (``base.sample_latent``).

Sizes (``width`` = the paper's ch): 32 px is the CIFAR-10 configuration of the
authors' code (BigGAN-PyTorch, G_arch/D_arch[32]): G 4ch = 256 channels at
width 64 in three up-blocks (4 -> 8 -> 16 -> 32), D four 256-channel blocks, the
first two downsampling. 64 px follows the same code's arch[64] (the 128 px
Table 4 with its top stage removed): G 16ch-16ch-8ch-4ch-2ch, D ch-2ch-4ch-8ch-16ch.
z is 128-d; at 32 px it splits into 4 chunks of 32. When z_dim is not a
multiple of the number of chunks, the first z_dim % n chunks are one longer
(the authors' code instead shortens z to a multiple).

Attention: the paper puts its non-local block at 64x64 of a 128 px model (Table
4), i.e. half the image side; we do the same (16x16 at 32 px, 32x32 at 64 px).
The authors' public CIFAR-10 script (launch_cifar_ema.sh) disables attention
(G_attn 0, D_attn 0); set ``model.attention=false`` to match it.

Training settings live in conf/model/biggan.yaml (hinge loss, Adam 2e-4 / 2e-4
with beta (0, 0.999), 4 D steps, batch 50, ortho reg 1e-4, EMA 0.9999 from step
1000), as in the authors' CIFAR-10 script; that script has no ortho reg, no
attention, N(0, 0.02) init and no shared embedding / hierarchical z; see docs/MODELS.md.

Deviations: G's class embedding has no spectral norm, as in the authors' code
(they found SN on it harmful). The EMA generator's BatchNorm layers get standing
statistics of their own weights (ganrun.training.ema), as the authors' code offers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import ConfigError
from ganrun.models import base, layers, sagan


def chunk_sizes(z_dim: int, n: int) -> list[int]:
    """Sizes of the ``n`` z chunks: as equal as possible, the first ones longer."""
    return [z_dim // n + (1 if i < z_dim % n else 0) for i in range(n)]


class Generator(base.Generator):
    RESOLUTIONS = (32, 64)
    IMAGES_ONLY = True
    REQUIRES_LABELS = True
    # channel multipliers of `width`: the 4x4 input, then each up-block's output
    LAYOUT = {32: (4, 4, 4, 4), 64: (16, 16, 8, 4, 2)}

    def __init__(
        self,
        data_shape,
        num_classes: int = 0,
        z_dim: int = 128,
        width: int = 64,
        shared_dim: int = 128,
        attention: bool = True,
        attention_res: int | None = None,
    ):
        super().__init__(z_dim, data_shape, "normal")
        sagan.check_args(self, self.data_shape, num_classes, width)
        channels, res, _ = self.data_shape
        ch = [m * width for m in self.LAYOUT[res]]
        n_blocks = len(ch) - 1
        if z_dim < n_blocks + 1:
            raise ConfigError(
                f"model.z_dim={z_dim} is too small to give each of BigGAN's {n_blocks + 1} "
                f"z chunks (input layer + {n_blocks} blocks) a dimension"
            )
        if shared_dim < 1:
            raise ConfigError(f"model.shared_dim must be >= 1, got {shared_dim}")
        self.num_classes = int(num_classes)
        self.chunk_sizes = chunk_sizes(z_dim, n_blocks + 1)
        self.attention_res = sagan.attention_side(res, attention, attention_res)
        self.shared = nn.Embedding(self.num_classes, shared_dim)  # one table for every block
        self.linear = layers.linear(self.chunk_sizes[0], ch[0] * 16, True)
        blocks: list[nn.Module] = []
        side = 4
        for i, (cin, cout) in enumerate(zip(ch[:-1], ch[1:])):
            cond_dim = shared_dim + self.chunk_sizes[i + 1]
            blocks.append(layers.GBlock(cin, cout, True, 0, cond_dim, use_sn=True))
            side *= 2
            if side == self.attention_res:
                blocks.append(layers.SelfAttention(cout, True))
        self.blocks = nn.ModuleList(blocks)
        self.out_bn = nn.BatchNorm2d(ch[-1])
        self.out_conv = layers.conv3x3(ch[-1], channels, True)
        layers.init_weights(self, "ortho")

    def conditions(self, z: torch.Tensor, c: torch.Tensor):
        """(z chunk for the input layer, [shared embedding ++ z chunk] for each block)."""
        e = self.shared(c)
        first, *rest = torch.split(z, self.chunk_sizes, dim=1)
        return first, [torch.cat([e, zi], dim=1) for zi in rest]

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if c is None:
            raise ValueError("BigGAN is class-conditional: call G(z, c) with class labels")
        z0, conds = self.conditions(z, c)
        h = self.linear(z0).view(z.shape[0], -1, 4, 4)
        k = 0
        for block in self.blocks:
            if isinstance(block, layers.GBlock):
                h, k = block(h, conds[k]), k + 1
            else:
                h = block(h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class Discriminator(sagan.Discriminator):
    """The projection discriminator of ``sagan`` with BigGAN's widths, orthogonal
    initialisation, and labels required."""

    REQUIRES_LABELS = True
    LAYOUT = {
        32: ((4, 4, 4, 4), (True, True, False, False)),
        64: ((1, 2, 4, 8, 16), (True, True, True, True, False)),
    }
    INIT = "ortho"

    def __init__(
        self,
        data_shape,
        num_classes: int = 0,
        width: int = 64,
        attention: bool = True,
        attention_res: int | None = None,
    ):
        super().__init__(data_shape, num_classes, width, attention, attention_res, True)

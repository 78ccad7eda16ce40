"""Exponential moving average of G's weights (Yazici et al. 2019; Karras et al.
2018 keep one for every figure). Buffers (BatchNorm statistics) are copied."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model, parameter by parameter."""
    e_params = [p for p in ema.parameters()]
    m_params = [p.detach() for p in model.parameters()]
    if e_params:
        torch._foreach_lerp_(e_params, m_params, 1.0 - beta)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


@torch.no_grad()
def copy_weights(dst: nn.Module, src: nn.Module) -> None:
    for pd, ps in zip(dst.parameters(), src.parameters()):
        pd.copy_(ps)
    for bd, bs in zip(dst.buffers(), src.buffers()):
        bd.copy_(bs)

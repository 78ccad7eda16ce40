"""Mixed precision: ``trainer.precision`` = fp32 (default) | bf16 | fp16.

* ``bf16``: the forward passes of both phases run under ``torch.autocast`` (CPU and
  CUDA) with bfloat16; bf16 has fp32's range, so no loss scaling is needed.
* ``fp16``: autocast with float16 plus one ``torch.amp.GradScaler`` per optimizer (D's
  and G's losses differ by orders of magnitude, and a step of one must not shrink the
  other's scale). The scalers' state goes into every checkpoint.

What runs in which precision (the seams, so the loop knows no model):

* ``Precision.phase(player)`` wraps a phase's ``d_loss``/``g_loss`` call: autocast,
  and the phase's scaler made visible to ``penalty_grad``. ``backward()`` runs outside
  autocast, as the PyTorch AMP docs recommend.
* The Objective casts D's outputs and features to float32 before any loss or
  regularizer reads them, so losses, R1, feature matching and InfoGAN's MI term are
  computed in fp32 from low-precision network outputs.
* Every ``torch.autograd.grad`` a penalty takes (GP, R1, consensus, ...) goes through
  ``penalty_grad``: under fp16 it differentiates the *scaled* outputs and divides the
  gradients by the scale, the gradient-penalty recipe of the PyTorch AMP examples
  ("Gradient penalty": ``autograd.grad(scaler.scale(loss), ...)`` then multiply by
  ``1 / scaler.get_scale()``), so small input gradients do not underflow in fp16. The
  scale is read as a tensor (``scaler.scale(ones)``), not ``get_scale()``, which would
  cost a host-device sync per penalty.

The divergence guard and the fp16 scaler: a step whose scaled gradients overflow is
skipped by ``GradScaler.step`` (the weights are left as they were) and the scale is
halved; that is normal, especially in the first steps from 2^16. Such a step's losses
and gradient norms may be inf/NaN, so the loop leaves them out of the logged averages
(``skipped`` below, one flag per optimizer step, no sync) and logs the fraction of
skipped steps as ``amp/skipped_d`` / ``amp/skipped_g``. The guard then still sees every
weight (a skipped step cannot make them non-finite) and every non-skipped step's
values; what it adds for fp16 is the scale: below ``MIN_LOSS_SCALE`` = 1 fp16
overflows even without scaling (torch's GradScaler docs: "If the scale falls below 1
... something is likely wrong"), which is how a diverging fp16 run shows, since its
non-finite gradients are never applied.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Sequence

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MIN_LOSS_SCALE = 1.0

# the GradScaler of the phase being computed (fp16), read by penalty_grad
_ACTIVE_SCALER: contextvars.ContextVar[torch.amp.GradScaler | None] = contextvars.ContextVar(
    "ganrun_active_scaler", default=None
)


def penalty_grad(
    outputs: torch.Tensor,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    create_graph: bool = True,
    allow_unused: bool = False,
) -> tuple[torch.Tensor | None, ...]:
    """``torch.autograd.grad(outputs, inputs, create_graph=...)`` for a penalty term,
    correct under every ``trainer.precision``: under fp16 the gradient is taken of the
    scaled ``outputs`` and unscaled (the AMP docs' gradient-penalty recipe); otherwise
    it is the plain call. Use it for every gradient a regularizer takes."""
    scaler = _ACTIVE_SCALER.get()
    if scaler is None or not scaler.is_enabled():
        return torch.autograd.grad(
            outputs, inputs, create_graph=create_graph, allow_unused=allow_unused
        )
    # the current scale as a 0-d tensor on outputs' device (no host-device sync)
    scale = scaler.scale(torch.ones((), device=outputs.device))
    grads = torch.autograd.grad(
        outputs * scale, inputs, create_graph=create_graph, allow_unused=allow_unused
    )
    inv = 1.0 / scale
    return tuple(None if g is None else g * inv for g in grads)


def check(mode: str, device: torch.device) -> str | None:
    """Why ``trainer.precision=mode`` cannot run on ``device`` (None when it can)."""
    if mode not in PRECISIONS:
        return f"trainer.precision={mode} is not valid; choose from {', '.join(PRECISIONS)}"
    if mode != "fp32" and device.type not in ("cpu", "cuda"):
        return (
            f"trainer.precision={mode} needs trainer.device=cpu or cuda (autocast and the "
            f"GradScaler are not used on {device.type} here); use trainer.precision=fp32"
        )
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return (
            "trainer.precision=bf16 but this GPU has no bfloat16 support; "
            "use trainer.precision=fp16 (with loss scaling) or fp32"
        )
    return None


class Precision:
    """Autocast and the per-optimizer GradScalers of one run."""

    def __init__(self, mode: str, device: torch.device):
        self.mode = str(mode)
        self.device = torch.device(device)
        self.dtype = DTYPES.get(self.mode)
        fp16 = self.mode == "fp16"
        self.scalers = {
            "D": torch.amp.GradScaler(self.device.type, enabled=fp16),
            "G": torch.amp.GradScaler(self.device.type, enabled=fp16),
        }

    @property
    def scaling(self) -> bool:
        return self.mode == "fp16"

    def scaler(self, player: str) -> torch.amp.GradScaler | None:
        s = self.scalers[player]
        return s if s.is_enabled() else None

    @contextlib.contextmanager
    def phase(self, player: str):
        """Around one phase's loss computation: autocast (bf16/fp16) and, for fp16,
        ``player``'s scaler for ``penalty_grad``."""
        token = _ACTIVE_SCALER.set(self.scaler(player))
        try:
            if self.dtype is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=self.dtype):
                    yield
        finally:
            _ACTIVE_SCALER.reset(token)

    def scales(self) -> dict[str, float]:
        """The current loss scales (fp16; one sync each): for the log and the guard."""
        return {p: s.get_scale() for p, s in self.scalers.items() if s.is_enabled()}

    def too_small(self) -> list[str]:
        """Names for the divergence guard of the scales below MIN_LOSS_SCALE."""
        return [
            f"{p} loss scale ({v:g} < {MIN_LOSS_SCALE:g}: fp16 overflows even unscaled; "
            "try trainer.precision=bf16 or fp32)"
            for p, v in self.scales().items()
            if v < MIN_LOSS_SCALE
        ]

    def state_dict(self) -> dict:
        return {p: s.state_dict() for p, s in self.scalers.items() if s.is_enabled()}

    def load_state_dict(self, state: dict) -> None:
        """Scaler states of a checkpoint; a run resumed in another precision starts
        its scalers afresh (a checkpoint from fp32 has none)."""
        for p, s in self.scalers.items():
            if s.is_enabled() and state.get(p):
                s.load_state_dict(dict(state[p]))


# --------------------------------------------------------------------------- layout, compile
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile(mode: str | None, device: torch.device) -> str | None:
    """Why ``trainer.compile=true`` (with ``trainer.compile_mode=mode``) cannot run here."""
    import importlib.util
    import shutil

    if mode is not None and mode not in COMPILE_MODES:
        return f"trainer.compile_mode={mode} is not valid; choose from null, {', '.join(COMPILE_MODES)}"
    try:
        import torch._dynamo as dynamo

        supported = dynamo.is_dynamo_supported()
    except Exception:  # noqa: BLE001 - any failure means: not here
        supported = False
    if not supported:
        return "trainer.compile=true: torch.compile is not supported on this Python/torch; drop it"
    if device.type == "cpu" and not any(
        shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++", "c++")
    ):
        return (
            "trainer.compile=true on the CPU needs a C++ compiler (g++ or clang++) for "
            "torch.compile's inductor backend; install one or drop trainer.compile"
        )
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "trainer.compile=true on CUDA needs triton (pip install triton) or drop it"
    if device.type not in ("cpu", "cuda"):
        return f"trainer.compile=true is supported here on cpu and cuda, not {device.type}"
    return None


def prepare_networks(built, trainer_cfg, dist) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(G, D) as the phases run them: ``trainer.channels_last`` converts G, D and G_ema
    in place (a no-op for networks without 4-D weights, e.g. MLPs on 2-D points);
    ``trainer.sync_batchnorm`` under torchrun swaps G's and D's BatchNorm layers for
    SyncBatchNorm in place (G_ema keeps BatchNorm: it runs in eval mode, on rank 0);
    ``trainer.compile`` wraps both in ``torch.compile``. The wrappers share the
    modules' parameters, so the optimizers, the EMA and the checkpoints keep using
    ``built.G`` and ``built.D`` (whose state-dict keys stay as they are)."""
    from ganrun.training import distributed

    t = trainer_cfg
    nets = [n for n in (built.G, built.D, built.G_ema) if n is not None]
    if t.get("channels_last"):
        for net in nets:
            net.to(memory_format=torch.channels_last)
    if t.get("sync_batchnorm") and dist.enabled:
        for net in (built.G, built.D):
            if distributed.convert_sync_batchnorm(net) is not net:
                raise TypeError("a network that is itself a BatchNorm layer cannot be converted")
    G, D = built.G, built.D
    if t.get("compile"):
        kwargs = {"mode": t.compile_mode} if t.get("compile_mode") else {}
        G, D = torch.compile(G, **kwargs), torch.compile(D, **kwargs)
    return G, D


def channels_last_batch(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def check_settings(cfg) -> None:
    """ConfigError (one line, before a run starts) for trainer.precision, compile and
    the torchrun settings (batch size per rank, SyncBatchNorm) this machine cannot run."""
    from ganrun.build import resolve_device
    from ganrun.errors import ConfigError
    from ganrun.training import distributed

    t = cfg.trainer
    device = resolve_device(str(t.device))
    why = check(str(t.precision), device)
    if why is None and t.compile:
        why = check_compile(t.compile_mode, device)
    if why:
        raise ConfigError(why)
    distributed.check(cfg)

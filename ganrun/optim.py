"""Optimizer recipes: one config node builds G's and D's optimizers.

Each recipe holds separate learning rates for G and D (``lr_g``, ``lr_d``) and
a learning-rate schedule that is a pure function of the generator step, so a
resumed run needs no scheduler state to continue exactly:

* ``constant``
* ``exponential``: lr_t = max(lr / decay_factor**t, min_lr), pylearn2's
  ExponentialDecay as used by Goodfellow et al. 2014's reference code
* ``linear``: lr_t decays linearly from lr to min_lr over the run
"""

from __future__ import annotations

import torch

from ganrun.errors import ConfigError

SCHEDULES = ("constant", "exponential", "linear")


class OptimizerRecipe:
    name = "optimizer"

    def __init__(
        self,
        lr_g: float,
        lr_d: float,
        schedule: str = "constant",
        decay_factor: float = 1.0,
        min_lr: float = 0.0,
    ):
        for key, lr in (("lr_g", lr_g), ("lr_d", lr_d)):
            if not lr > 0:
                raise ConfigError(f"optimizer.{key} must be > 0, got {lr}")
        if schedule not in SCHEDULES:
            raise ConfigError(
                f"optimizer.schedule={schedule!r} is not valid; choose from {', '.join(SCHEDULES)}"
            )
        if schedule == "exponential" and not decay_factor >= 1.0:
            raise ConfigError(
                f"optimizer.decay_factor divides the lr every step and must be >= 1, got {decay_factor}"
            )
        self.lr_g, self.lr_d = float(lr_g), float(lr_d)
        self.schedule, self.decay_factor, self.min_lr = schedule, float(decay_factor), float(min_lr)

    def make(self, params, lr: float) -> torch.optim.Optimizer:
        raise NotImplementedError

    def build(self, g_params, d_params) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        return self.make(list(g_params), self.lr_g), self.make(list(d_params), self.lr_d)

    def lr_factor(self, step: int, total_steps: int) -> float:
        if self.schedule == "exponential":
            return self.decay_factor ** (-step)
        if self.schedule == "linear":
            return max(0.0, 1.0 - step / max(1, total_steps))
        return 1.0

    def apply_schedule(self, opt_g, opt_d, step: int, total_steps: int) -> None:
        """Set the learning rates (and other scheduled values) for generator step ``step``."""
        if self.schedule == "constant":
            return
        f = self.lr_factor(step, total_steps)
        for opt, lr in ((opt_g, self.lr_g), (opt_d, self.lr_d)):
            for group in opt.param_groups:
                group["lr"] = max(lr * f, self.min_lr)


def _foreach(params) -> bool | None:
    # torch only turns on the multi-tensor path by default on CUDA; it is faster on CPU too.
    return True if params else None


class Adam(OptimizerRecipe):
    """Adam (Kingma & Ba 2015)."""

    name = "adam"

    def __init__(
        self,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: list[float] = (0.5, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        decay_factor: float = 1.0,
        min_lr: float = 0.0,
    ):
        super().__init__(lr_g, lr_d, schedule, decay_factor, min_lr)
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {list(betas)}")
        self.betas, self.eps, self.weight_decay = betas, float(eps), float(weight_decay)

    def make(self, params, lr):
        return torch.optim.Adam(
            params,
            lr=lr,
            betas=self.betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            foreach=_foreach(params),
        )


class SGD(OptimizerRecipe):
    """SGD with momentum; the momentum can ramp linearly from ``momentum`` to
    ``momentum_final`` over ``momentum_ramp_steps`` generator steps (pylearn2's
    MomentumAdjustor, as in Goodfellow et al. 2014's reference code)."""

    name = "sgd"

    def __init__(
        self,
        lr_g: float = 0.1,
        lr_d: float = 0.1,
        momentum: float = 0.5,
        momentum_final: float | None = None,
        momentum_ramp_steps: int = 0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        decay_factor: float = 1.0,
        min_lr: float = 0.0,
    ):
        super().__init__(lr_g, lr_d, schedule, decay_factor, min_lr)
        for key, m in (("momentum", momentum), ("momentum_final", momentum_final)):
            if m is not None and not 0.0 <= m < 1.0:
                raise ConfigError(f"optimizer.{key} must be in [0, 1), got {m}")
        self.momentum = float(momentum)
        self.momentum_final = None if momentum_final is None else float(momentum_final)
        self.momentum_ramp_steps = int(momentum_ramp_steps)
        self.nesterov, self.weight_decay = bool(nesterov), float(weight_decay)

    def make(self, params, lr):
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            foreach=_foreach(params),
        )

    def momentum_at(self, step: int) -> float:
        if self.momentum_final is None or self.momentum_ramp_steps <= 0:
            return self.momentum
        t = min(1.0, step / self.momentum_ramp_steps)
        return self.momentum + t * (self.momentum_final - self.momentum)

    def apply_schedule(self, opt_g, opt_d, step, total_steps):
        super().apply_schedule(opt_g, opt_d, step, total_steps)
        if self.momentum_final is not None:
            m = self.momentum_at(step)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["momentum"] = m

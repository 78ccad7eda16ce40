"""Optimizer recipes: one config node builds G's and D's optimizers.

Recipes: ``SGD``, ``Adam``, ``RMSprop`` (WGAN), ``TTUR`` (Adam with separate
rates, SAGAN's defaults) and ``OptimisticAdam`` (Daskalakis et al. 2018; the
optimizer itself is ``OptimisticAdamOptimizer``).

Each recipe holds separate learning rates for G and D (``lr_g``, ``lr_d``) and
a learning-rate schedule that is a pure function of the generator step, so a
resumed run needs no scheduler state to continue exactly:

* ``constant``
* ``exponential``: lr_t = max(lr / decay_factor**t, min_lr), pylearn2's
  ExponentialDecay as used by Goodfellow et al. 2014's reference code
* ``linear``: lr_t decays linearly from lr to min_lr over the run
* ``step``: lr_t = max(lr / decay_factor**floor(t / decay_every), min_lr), a division
  by ``decay_factor`` every ``decay_every`` generator steps (BEGAN: halve the rate;
  Berthelot et al. 2017, Sec. 4.1, as the widely used BEGAN code does it)

``apply_schedule`` sets the rates of every schedule, times the trainer's
``lr_scale`` (the divergence guard's rollback factor, kept in checkpoints).
"""

from __future__ import annotations

import torch

from ganrun.errors import ConfigError

SCHEDULES = ("constant", "exponential", "linear", "step")


class OptimizerRecipe:
    name = "optimizer"

    def __init__(
        self,
        lr_g: float,
        lr_d: float,
        schedule: str = "constant",
        decay_factor: float = 1.0,
        min_lr: float = 0.0,
        decay_every: int = 0,
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
        if schedule == "step" and not (decay_factor >= 1.0 and decay_every >= 1):
            raise ConfigError(
                "optimizer.schedule=step divides the lr by optimizer.decay_factor (>= 1) every "
                f"optimizer.decay_every (>= 1) steps, got {decay_factor} and {decay_every}"
            )
        self.lr_g, self.lr_d = float(lr_g), float(lr_d)
        self.schedule, self.decay_factor, self.min_lr = schedule, float(decay_factor), float(min_lr)
        self.decay_every = int(decay_every)

    def make(self, params, lr: float) -> torch.optim.Optimizer:
        raise NotImplementedError

    def build(self, g_params, d_params) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        return self.make(list(g_params), self.lr_g), self.make(list(d_params), self.lr_d)

    def lr_factor(self, step: int, total_steps: int) -> float:
        if self.schedule == "exponential":
            return self.decay_factor ** (-step)
        if self.schedule == "linear":
            return max(0.0, 1.0 - step / max(1, total_steps))
        if self.schedule == "step":
            return self.decay_factor ** (-(step // self.decay_every))
        return 1.0

    def lr_at(self, lr: float, step: int, total_steps: int) -> float:
        """The scheduled learning rate at generator step ``step`` for base rate ``lr``."""
        if self.schedule == "constant":
            return lr
        return max(lr * self.lr_factor(step, total_steps), self.min_lr)

    def apply_schedule(
        self, opt_g, opt_d, step: int, total_steps: int, lr_scale: float = 1.0
    ) -> None:
        """Set the learning rates (and other scheduled values) for generator step ``step``.

        Every schedule sets the rates, the constant one included, so the optimizers'
        rates are always a function of (recipe, step, ``lr_scale``) and never whatever
        a loaded optimizer state carried. ``lr_scale`` multiplies the scheduled rate:
        the divergence guard's accumulated rollback factor (trainer.on_nan=rollback),
        which the trainer keeps in its checkpoints."""
        for opt, lr in ((opt_g, self.lr_g), (opt_d, self.lr_d)):
            value = self.lr_at(lr, step, total_steps) * lr_scale
            for group in opt.param_groups:
                group["lr"] = value


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
        decay_every: int = 0,
    ):
        super().__init__(lr_g, lr_d, schedule, decay_factor, min_lr, decay_every)
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
        decay_every: int = 0,
    ):
        super().__init__(lr_g, lr_d, schedule, decay_factor, min_lr, decay_every)
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

    def apply_schedule(self, opt_g, opt_d, step, total_steps, lr_scale=1.0):
        super().apply_schedule(opt_g, opt_d, step, total_steps, lr_scale)
        if self.momentum_final is not None:
            m = self.momentum_at(step)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["momentum"] = m


class RMSprop(OptimizerRecipe):
    """RMSProp (Tieleman & Hinton 2012), as WGAN uses it (Arjovsky et al. 2017,
    Alg. 1: lr 5e-5 for both players, no momentum — momentum-based optimizers
    made the critic unstable, Sec. 3). WGAN's reference code calls torch's
    RMSprop with its defaults (alpha 0.99, eps 1e-8), which we keep."""

    name = "rmsprop"

    def __init__(
        self,
        lr_g: float = 5e-5,
        lr_d: float = 5e-5,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        decay_factor: float = 1.0,
        min_lr: float = 0.0,
        decay_every: int = 0,
    ):
        super().__init__(lr_g, lr_d, schedule, decay_factor, min_lr, decay_every)
        if not 0.0 <= alpha < 1.0:
            raise ConfigError(f"optimizer.alpha must be in [0, 1), got {alpha}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"optimizer.momentum must be in [0, 1), got {momentum}")
        self.alpha, self.eps, self.momentum = float(alpha), float(eps), float(momentum)
        self.centered, self.weight_decay = bool(centered), float(weight_decay)

    def make(self, params, lr):
        return torch.optim.RMSprop(
            params,
            lr=lr,
            alpha=self.alpha,
            eps=self.eps,
            momentum=self.momentum,
            centered=self.centered,
            weight_decay=self.weight_decay,
            foreach=_foreach(params),
        )


class TTUR(Adam):
    """Two time-scale update rule (Heusel et al. 2017): Adam with a larger
    learning rate for D than for G. Defaults are SAGAN's use of it (Zhang et
    al. 2018, Sec. 5: lr_d 4e-4, lr_g 1e-4, beta1 0, beta2 0.9); Heusel et
    al. tuned the two rates per experiment."""

    name = "ttur"

    def __init__(
        self,
        lr_g: float = 1e-4,
        lr_d: float = 4e-4,
        betas: list[float] = (0.0, 0.9),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        decay_factor: float = 1.0,
        min_lr: float = 0.0,
        decay_every: int = 0,
    ):
        super().__init__(
            lr_g, lr_d, betas, eps, weight_decay, schedule, decay_factor, min_lr, decay_every
        )


class OptimisticAdamOptimizer(torch.optim.Optimizer):
    """Optimistic Adam (Daskalakis et al. 2018, "Training GANs with Optimism", Alg. 1):

        m_t = b1 m_{t-1} + (1 - b1) g_t;   v_t = b2 v_{t-1} + (1 - b2) g_t^2
        u_t = m_hat_t / (sqrt(v_hat_t) + eps)   (bias-corrected, as in Adam)
        theta_t = theta_{t-1} - 2 lr u_t + lr u_{t-1}

    Alg. 1 leaves u_0 undefined (m_hat_0 = 0/0); we take u_0 = u_1, so the first
    step is a plain Adam step (the authors' Keras code uses u_0 = 0, i.e. twice
    Adam's first step). m, v, u_{t-1} and t live in the optimizer state, so
    ``state_dict`` resumes exactly.
    """

    def __init__(self, params, lr: float = 1e-4, betas=(0.5, 0.9), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
                prev = state.get("prev_update", u)  # u_0 = u_1: the first step is Adam's
                p.add_(u, alpha=-2 * lr).add_(prev, alpha=lr)
                state["prev_update"] = u
        return loss


class OptimisticAdam(OptimizerRecipe):
    """Optimistic Adam for both players (``OptimisticAdamOptimizer``). Defaults are
    Daskalakis et al.'s CIFAR-10 WGAN-GP setting (their code's defaults: lr 1e-4,
    beta1 0.5, beta2 0.9)."""

    name = "optimistic_adam"

    def __init__(
        self,
        lr_g: float = 1e-4,
        lr_d: float = 1e-4,
        betas: list[float] = (0.5, 0.9),
        eps: float = 1e-8,
        schedule: str = "constant",
        decay_factor: float = 1.0,
        min_lr: float = 0.0,
        decay_every: int = 0,
    ):
        super().__init__(lr_g, lr_d, schedule, decay_factor, min_lr, decay_every)
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"optimizer.betas must be two numbers in [0, 1), got {list(betas)}")
        self.betas, self.eps = betas, float(eps)

    def make(self, params, lr):
        return OptimisticAdamOptimizer(params, lr=lr, betas=self.betas, eps=self.eps)

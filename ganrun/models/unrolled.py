"""Unrolled GAN — Metz, Poole, Pfau & Sohl-Dickstein 2017, "Unrolled Generative
Adversarial Networks" (ICLR 2017, arXiv:1611.02163).

G's objective is the GAN value f evaluated at the discriminator's parameters after K
steps of D's own optimization, differentiated *through* those steps (Sec. 2.2):

    theta_D^0 = theta_D,  theta_D^{k+1} = theta_D^k + eta^k df(theta_G, theta_D^k)/dtheta_D^k  (Eqs. 6-7)
    f_K(theta_G, theta_D) = f(theta_G, theta_D^K(theta_G, theta_D))                       (Eq. 9)

with f the GAN value function (Eq. 4), and G descends df_K/dtheta_G (Eq. 10), which
includes the "how would D react" term (df/dtheta_D^K)(dtheta_D^K/dtheta_G) (Eq. 12,
Sec. 2.4); D's actual update is the ordinary one (Eq. 11). Equation numbers are those
of the arXiv text (Sec. 2.2-2.4). ``Unrolled`` (``regularizer=unrolled``) is that G objective: it replaces G's
adversarial loss (``replaces_g_loss``), so it composes with any model and loss. Each
unrolled step descends the objective's own D loss (f with D's sign) on the G phase's
batch: the real batch of D's last step and the generated batch, whose graph to G is
kept (the paper uses one fixed minibatch for all K unrolling steps, Sec. 3). D is called with ``torch.func.functional_call`` on copies of its parameters
and buffers, so the real D (weights, BatchNorm statistics) is untouched.

The unrolled steps use D's optimizer (``optimizer: d``, the default): its update rule
written out differentiably (Adam/TTUR, SGD, RMSprop, Optimistic Adam), continuing
from D's current state (moments, step count) with its current hyperparameters: the
paper unrolls Adam ("In our experiments we unroll Adam", Sec. 2.2), and the authors'
demo code (github.com/poolio/unrolled_gan) unrolls the Keras Adam updates of D's own
optimizer. ``optimizer: sgd`` is Eq. 7 as printed (plain gradient steps, lr = D's
current rate unless ``lr`` is set).
``second_order: false`` keeps only the first term of Eq. 12 (theta_D^K treated as a
constant), the gradient that K D steps before each G step would give (Sec. 2.3).

``objective: value`` (the default) is f_K itself: G descends the game's value at
theta_D^K, minus D's loss on the same real and generated batch (for the GAN value
function, mean log D(x) + mean log(1 - D(G(z))), Eq. 4), whose real-data term reaches G
only through theta_D^K; the authors' demo does the same (G minimizes -unrolled_loss,
D's cross-entropy on both halves). ``objective: g_loss`` takes the model's own G loss
(e.g. the non-saturating one) on the generated half at theta_D^K instead: not the
paper's, and what ganrun did before 2026-12-03.

The 2-D networks of the paper's mixture-of-Gaussians experiment (Sec. 3.1 defers them
to App. A, whose text was NOT available to check; these are recollections of it): G
maps z ~ N(0, I_256) through two ReLU layers of 128 units to a linear 2-D output; D
scales its input by 1/4 (to about (-1, 1) on a radius-2 ring), one ReLU layer of 128
units, one logit. All weights orthogonal with gain 0.8, biases 0. The authors' demo
notebook, which says its architecture and hyperparameters are "not identical to the
one in the paper", differs: tanh layers (two for D too), orthogonal gain 1.4, G lr
1e-3, D lr 1e-4, K = 5, ring radius 1, std 0.01.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from ganrun.errors import ConfigError
from ganrun.losses import Loss
from ganrun.models import base
from ganrun.objective import Batch, Regularizer

UNROLL_OPTIMIZERS = ("d", "sgd")
G_OBJECTIVES = ("value", "g_loss")


def _orthogonal_init(module: nn.Module, gain: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)


class Generator(base.Generator):
    """App. A's G: z (256-d normal) -> [Linear-ReLU] x depth -> linear output."""

    def __init__(
        self,
        data_shape,
        z_dim: int = 256,
        width: int = 128,
        depth: int = 2,
        init_gain: float = 0.8,
        z_dist: str = "normal",
    ):
        super().__init__(z_dim, data_shape, z_dist)
        if width < 1 or depth < 1:
            raise ConfigError(f"unrolled G needs width >= 1 and depth >= 1, got {width}, {depth}")
        layers: list[nn.Module] = []
        d = z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        out = math.prod(self.data_shape)
        layers.append(nn.Linear(d, out))
        if len(self.data_shape) == 3:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        _orthogonal_init(self, init_gain)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.data_shape)


class Discriminator(base.Discriminator):
    """App. A's D: x * input_scale -> [Linear-ReLU] x depth -> one logit."""

    def __init__(
        self,
        data_shape,
        width: int = 128,
        depth: int = 1,
        input_scale: float = 0.25,
        init_gain: float = 0.8,
    ):
        super().__init__(data_shape)
        if width < 1 or depth < 1:
            raise ConfigError(f"unrolled D needs width >= 1 and depth >= 1, got {width}, {depth}")
        if not input_scale > 0:
            raise ConfigError(f"model.D.input_scale must be > 0, got {input_scale}")
        self.input_scale = float(input_scale)
        layers: list[nn.Module] = []
        d = math.prod(self.data_shape)
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(d, 1)
        _orthogonal_init(self, init_gain)

    def forward_features(self, x: torch.Tensor, c: torch.Tensor | None = None):
        h = self.trunk(x.flatten(1) * self.input_scale)
        return self.head(h).view(x.shape[0]), h


# --------------------------------------------------------------------------- the G objective
def _sqrt(v: torch.Tensor) -> torch.Tensor:
    # at v = 0 the gradient of sqrt is infinite (0 * inf = nan for a parameter whose
    # gradient is 0); clamp_min passes no gradient there instead
    return v.clamp_min(1e-30).sqrt()


def _scalar(x) -> float:
    return float(x.item() if torch.is_tensor(x) else x)


def _state(opt: torch.optim.Optimizer | None, p: torch.Tensor) -> dict:
    """D's optimizer state for parameter ``p``, detached (constants of the unroll)."""
    st = opt.state.get(p, {}) if opt is not None else {}
    return {k: (v.detach() if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in st.items()}


def adam_step(p, g, st: dict, h: dict, optimistic: bool = False):
    """One differentiable step of torch.optim.Adam (amsgrad off) or, with ``optimistic``,
    of ganrun's OptimisticAdamOptimizer; ``st`` (exp_avg, exp_avg_sq, step, prev_update)
    is read and a new state returned: (new parameter, new state)."""
    b1, b2 = h["betas"]
    if h.get("weight_decay"):
        g = g + h["weight_decay"] * p
    t = int(_scalar(st.get("step", 0))) + 1
    m = b1 * st.get("exp_avg", torch.zeros_like(p)) + (1 - b1) * g
    v = b2 * st.get("exp_avg_sq", torch.zeros_like(p)) + (1 - b2) * g * g
    if optimistic:  # u_t = m_hat / (sqrt(v_hat) + eps); theta - 2 lr u_t + lr u_{t-1}
        u = (m / (1 - b1**t)) / (_sqrt(v / (1 - b2**t)) + h["eps"])
        new = p - 2 * h["lr"] * u + h["lr"] * st.get("prev_update", u)
        return new, {"exp_avg": m, "exp_avg_sq": v, "step": t, "prev_update": u}
    denom = _sqrt(v) / math.sqrt(1 - b2**t) + h["eps"]
    new = p - (h["lr"] / (1 - b1**t)) * m / denom
    return new, {"exp_avg": m, "exp_avg_sq": v, "step": t}


def sgd_step(p, g, st: dict, h: dict):
    """torch.optim.SGD's step (momentum, dampening, nesterov, weight decay)."""
    if h.get("weight_decay"):
        g = g + h["weight_decay"] * p
    mu = h.get("momentum", 0.0)
    if mu:
        buf = st.get("momentum_buffer")
        buf = g if buf is None else mu * buf + (1 - h.get("dampening", 0.0)) * g
        g = g + mu * buf if h.get("nesterov") else buf
        st = {"momentum_buffer": buf}
    return p - h["lr"] * g, st


def rmsprop_step(p, g, st: dict, h: dict):
    """torch.optim.RMSprop's step (centered, momentum, weight decay)."""
    if h.get("weight_decay"):
        g = g + h["weight_decay"] * p
    a = h["alpha"]
    v = a * st.get("square_avg", torch.zeros_like(p)) + (1 - a) * g * g
    new_st = {"square_avg": v}
    if h.get("centered"):
        ga = a * st.get("grad_avg", torch.zeros_like(p)) + (1 - a) * g
        avg = _sqrt(v - ga * ga) + h["eps"]
        new_st["grad_avg"] = ga
    else:
        avg = _sqrt(v) + h["eps"]
    if h.get("momentum"):
        buf = h["momentum"] * st.get("momentum_buffer", torch.zeros_like(p)) + g / avg
        new_st["momentum_buffer"] = buf
        return p - h["lr"] * buf, new_st
    return p - h["lr"] * g / avg, new_st


def plain_step(p, g, st: dict, h: dict):
    """Eq. 7 as printed: theta - lr * grad (a descent step on D's loss, i.e. ascent on f)."""
    return p - h["lr"] * g, st


def update_rule(opt: torch.optim.Optimizer | None, choice: str):
    """The differentiable step that mirrors D's optimizer (``choice="d"``) or Eq. 7."""
    from ganrun.optim import OptimisticAdamOptimizer

    if choice == "sgd":
        return plain_step
    if isinstance(opt, OptimisticAdamOptimizer):
        return lambda p, g, st, h: adam_step(p, g, st, h, optimistic=True)
    if isinstance(opt, torch.optim.Adam):
        if any(gr.get("amsgrad") or gr.get("maximize") for gr in opt.param_groups):
            raise ConfigError("regularizer.unrolled: D's Adam must not use amsgrad or maximize")
        return adam_step
    if isinstance(opt, torch.optim.SGD):
        return sgd_step
    if isinstance(opt, torch.optim.RMSprop):
        return rmsprop_step
    raise ConfigError(
        f"regularizer.unrolled.optimizer=d cannot unroll D's {type(opt).__name__}; "
        "use optimizer=adam, ttur, sgd, rmsprop or optimistic_adam, "
        "or regularizer.unrolled.optimizer=sgd"
    )


class Unrolled(Regularizer):
    """G's loss against D after ``steps`` differentiable unrolled D steps (Metz et al.
    2017, Eqs. 6-9); replaces G's adversarial loss. See the module doc.

    ``optimizer``: ``d`` unrolls D's own optimizer (its update rule, its current state
    and hyperparameters: Adam/TTUR, SGD, RMSprop, Optimistic Adam); ``sgd`` takes plain
    gradient steps (Eq. 7) of size ``lr`` (null: D's current learning rate)."""

    name = "unrolled"
    replaces_g_loss = True

    def __init__(
        self,
        steps: int = 5,
        optimizer: str = "d",
        lr: float | None = None,
        second_order: bool = True,
        objective: str = "value",
    ):
        if steps < 1:
            raise ConfigError(f"regularizer.unrolled.steps must be >= 1, got {steps}")
        base.check_choice("regularizer.unrolled.optimizer", optimizer, UNROLL_OPTIMIZERS)
        base.check_choice("regularizer.unrolled.objective", objective, G_OBJECTIVES)
        if lr is not None and not lr > 0:
            raise ConfigError(f"regularizer.unrolled.lr must be > 0 (or null: D's), got {lr}")
        self.steps, self.optimizer, self.objective = int(steps), optimizer, objective
        self.lr = None if lr is None else float(lr)
        self.second_order = bool(second_order)
        self.loss: Loss | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        self.rule = plain_step if optimizer == "sgd" else None

    def bind(self, loss: Loss) -> None:
        self.loss = loss

    def bind_optimizers(self, opt_g, opt_d) -> None:
        self.rule = update_rule(opt_d, self.optimizer)  # refuses what it cannot unroll
        self.opt_d = opt_d

    def _hyper(self) -> dict:
        h = dict(self.opt_d.param_groups[0]) if self.opt_d is not None else {}
        h.pop("params", None)
        if self.lr is not None:
            h["lr"] = self.lr
        if h.get("lr") is None:
            raise ConfigError("regularizer.unrolled needs regularizer.unrolled.lr or D's optimizer")
        return {k: (_scalar(v) if k == "lr" else v) for k, v in h.items()}

    def unrolled_params(self, D: nn.Module, real, real_c, fake, fake_c) -> dict:
        """theta_D^K (with D's buffers) as a dict name -> tensor, a function of G
        through ``fake`` unless ``second_order`` is off."""
        if self.rule is None:
            raise ConfigError("regularizer.unrolled=d needs D's optimizer (bind_optimizers)")
        h = self._hyper()
        named = list(D.named_parameters())
        params = {n: p.detach().requires_grad_(True) for n, p in named}
        states = {n: _state(self.opt_d, p) for n, p in named}
        buffers = {n: b.detach().clone() for n, b in D.named_buffers()}  # BN stats, SN vectors
        if not self.second_order:  # theta_D^K is a constant: no graph to G through the steps
            fake = fake.detach()
        for _ in range(self.steps):
            state = {**params, **buffers}
            d_real = functional_call(D, state, (real, real_c)).float()
            d_fake = functional_call(D, state, (fake, fake_c)).float()
            loss_d = self.loss.d(d_real, d_fake)
            grads = torch.autograd.grad(
                loss_d, list(params.values()), create_graph=self.second_order, allow_unused=True
            )
            new = {}
            for (n, p), g in zip(params.items(), grads):
                g = torch.zeros_like(p) if g is None else g
                p, states[n] = self.rule(p, g, states[n], h)
                new[n] = p if self.second_order else p.detach().requires_grad_(True)
            params = new
        return {**params, **buffers}

    def g_term(self, batch: Batch) -> torch.Tensor:
        real = batch.real.detach()
        D = batch.D
        state = self.unrolled_params(D, real, batch.real_c, batch.fake, batch.fake_c)
        d_fake = functional_call(D, state, (batch.fake, batch.fake_c)).float()
        if self.objective == "g_loss":
            return self.loss.g(d_fake)
        # f_K (Eq. 9): the game's value at theta_D^K, i.e. minus D's loss on the same real
        # and generated batch; its real-data term reaches G through theta_D^K only
        d_real = functional_call(D, state, (real, batch.real_c)).float()
        return -self.loss.d(d_real, d_fake)

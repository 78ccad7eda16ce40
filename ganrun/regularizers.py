"""Regularizers: terms added to D's or G's loss, or actions after D's step.

Each class is a ``ganrun.objective.Regularizer`` configured by
``conf/regularizer/<name>.yaml``; the group is a multi-select, so several
compose (``regularizer=[gp,r1]``). Terms come back already weighted; the
Objective adds them to the phase's loss (times ``interval`` for lazy ones).
Every gradient a penalty takes goes through ``penalty_grad(outputs, inputs)``
(ganrun.objective; correct under trainer.precision=fp16's loss scaling), and a
term without a second derivative says ``first_order = True`` (trainer.compile).

* ``WeightClip``           WGAN (Arjovsky et al. 2017, Alg. 1): clamp D's parameters.
* ``GradientPenalty``      WGAN-GP (Gulrajani et al. 2017, Eq. 3); one-sided
                           variant (their App.; Petzka et al. 2018).
* ``R1``                   Mescheder et al. 2018, Eq. 9.
* ``Orthogonal``           BigGAN (Brock et al. 2018, Eq. 3).
* ``Consensus``            Mescheder et al. 2017, "The Numerics of GANs", Sec. 4.
* ``LabelSmoothing``, ``FeatureMatching``, ``HistoricalAveraging``:
                           Salimans et al. 2016, Secs. 3.4, 3.1, 3.3. (Minibatch
                           discrimination, Sec. 3.2, is an architecture option:
                           ``model.D.minibatch_features``, ganrun/models/minibatch.py.)
* ``DRAGANPenalty``        DRAGAN (Kodali et al. 2017, Sec. 4): the gradient penalty
                           on perturbed real data, x + noise scaled by std(x).

Deviations from the papers (also in docs/OBJECTIVES.md):

* Packed discriminators (PacGAN) return one output per pack; gradient norms
  (GP, R1) are taken per D output, i.e. over the whole packed input, and GP
  draws one interpolation coefficient per pack.
* GP on a conditional D evaluates D(x_hat, c_real): the interpolate carries the
  real sample's label (the paper is unconditional).
* Orthogonal: BigGAN's reference code (BigGAN-PyTorch, utils.ortho) adds the
  gradient 2*beta*((W W^T) * (1 - I)) W directly, which is half the gradient of
  Eq. 3 as written (4*beta*(...) W); we implement Eq. 3, so weight = beta/2
  reproduces the code's beta (model=biggan sets 5e-5 = the code's 1e-4).
* Consensus: the paper updates both players simultaneously with one L; ganrun
  alternates D and G steps, so each phase adds weight * L evaluated at the
  current parameters on its own batch and descends it w.r.t. its own parameters.
* Historical averaging: the paper gives no weight; we default to 1.0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.errors import ConfigError
from ganrun.losses import Loss
from ganrun.objective import Batch, Regularizer, penalty_grad


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(f"regularizer.{name} must be > 0, got {value}")
    return float(value)


def _per_output(t: torch.Tensor, n_out: int) -> torch.Tensor:
    """(B, ...) -> (n_out, -1): one row per D output (a sample, or a PacGAN pack of
    consecutive samples)."""
    return t.reshape(n_out, -1)


def _sum_sq_grads(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    """||d loss / d params||^2, differentiable (create_graph) for a second backward."""
    grads = penalty_grad(loss, params, create_graph=True, allow_unused=True)
    terms = [g.pow(2).sum() for g in grads if g is not None]
    return torch.stack(terms).sum() if terms else loss.new_zeros(())


class WeightClip(Regularizer):
    """WGAN (Arjovsky et al. 2017, Alg. 1, line 7): after every critic update,
    clamp every critic parameter to [-clip, clip]; clip = 0.01 in the paper."""

    name = "weight_clip"
    first_order = True

    def __init__(self, clip: float = 0.01):
        self.clip = _positive("weight_clip.clip", clip)

    @torch.no_grad()
    def after_d_step(self, D: nn.Module) -> None:
        for p in D.parameters():
            p.clamp_(-self.clip, self.clip)


class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017, Alg. 1 and Eq. 3): weight * E[(||grad D(x_hat)||_2 - 1)^2]
    with x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1]; weight (lambda) = 10.
    ``one_sided``: weight * E[max(0, ||grad D(x_hat)|| - 1)^2] (the one-sided penalty
    the WGAN-GP paper mentions; Petzka et al. 2018, "On the regularization of WGANs")."""

    name = "gp"

    def __init__(self, weight: float = 10.0, one_sided: bool = False):
        self.weight = _positive("gp.weight", weight)
        self.one_sided = bool(one_sided)

    def d_term(self, batch: Batch) -> torch.Tensor:
        real, fake = batch.real.detach(), batch.fake.detach()
        n_out = batch.d_fake.shape[0]
        eps = torch.rand(n_out, device=real.device, dtype=real.dtype)
        eps = eps.repeat_interleave(real.shape[0] // n_out).view(-1, *[1] * (real.dim() - 1))
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        out = batch.D(x_hat, batch.real_c)
        (grad,) = penalty_grad(out.sum(), x_hat, create_graph=True)
        excess = _per_output(grad, out.shape[0]).norm(dim=1) - 1.0
        if self.one_sided:
            excess = F.relu(excess)
        return self.weight * excess.pow(2).mean()


class R1(Regularizer):
    """R1 (Mescheder et al. 2018, "Which training methods for GANs do actually
    converge?", Eq. 9): gamma/2 * E_x[||grad D(x)||^2] on real data; gamma = 10.
    ``interval`` > 1 is StyleGAN2's lazy regularization (Karras et al. 2020,
    Sec. 3.1: every 16 steps, scaled by 16 — the Objective applies the scale)."""

    name = "r1"
    needs_real_grad = True

    def __init__(self, gamma: float = 10.0, interval: int = 1):
        self.gamma = _positive("r1.gamma", gamma)
        if interval < 1:
            raise ConfigError(f"regularizer.r1.interval must be >= 1, got {interval}")
        self.interval = int(interval)

    def d_term(self, batch: Batch) -> torch.Tensor:
        (grad,) = penalty_grad(batch.d_real.sum(), batch.real, create_graph=True)
        sq = _per_output(grad, batch.d_real.shape[0]).pow(2).sum(dim=1)
        return 0.5 * self.gamma * sq.mean()


def ortho_penalty(G: nn.Module) -> torch.Tensor:
    """sum over G's weights of ||W W^T * (1 - I)||_F^2 (BigGAN, Eq. 3), W reshaped to
    (shape[0], -1): the rows (output units / filters) are pushed to be orthogonal, their
    norms are left free. 1-D parameters (biases, gains) and embedding tables are skipped,
    as BigGAN's code skips parameters with < 2 axes and its shared class embedding."""
    skip = {id(m.weight) for m in G.modules() if isinstance(m, nn.Embedding)}
    total = None
    for p in G.parameters():
        if p.dim() < 2 or id(p) in skip or not p.requires_grad:
            continue
        w = p.reshape(p.shape[0], -1)
        gram = w @ w.T
        off = gram - torch.diag_embed(torch.diagonal(gram))
        term = off.pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


class Orthogonal(Regularizer):
    """BigGAN's orthogonal regularization (Brock et al. 2018, Eq. 3):
    weight * ||W W^T * (1 - I)||_F^2 over G's weights, in the G phase; beta = 1e-4.
    The gradient is 4 * weight * ((W W^T) * (1 - I)) W, twice the authors' code's
    at the same beta: weight = beta/2 matches the code (model=biggan: 5e-5)."""

    name = "ortho"
    first_order = True

    def __init__(self, weight: float = 1e-4):
        self.weight = _positive("ortho.weight", weight)

    def g_term(self, batch: Batch) -> torch.Tensor:
        # in fp32 under trainer.precision=bf16/fp16: W W^T's small off-diagonal entries
        # are what the term measures, and autocast would compute the product in 8 bits
        with torch.autocast(batch.fake.device.type, enabled=False):
            return self.weight * ortho_penalty(batch.G).to(batch.fake.device)


def _trainable(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


class Consensus(Regularizer):
    """Consensus optimization (Mescheder et al. 2017, "The Numerics of GANs", Sec. 4):
    L = 1/2 ||v||^2, v = (grad_D loss_D, grad_G loss_G) the players' gradient vector
    field; each player descends its loss + weight * L (gamma = 10 in their experiments).
    The paper steps both players at once; here each phase evaluates L at the current
    parameters on its own batch:

    * D phase: ||grad_D loss_D||^2 from D's loss, plus ||grad_G loss_G||^2 with G's
      loss recomputed on the same z (an extra G forward, with graph);
    * G phase: ||grad_G loss_G||^2, plus ||grad_D loss_D||^2 with D's loss recomputed
      on the phase's real batch and the (differentiable) fakes, D's weights briefly
      set to require grad.

    ``full=false`` keeps only each phase's own term (cheaper; drops the cross terms,
    so it is no longer the paper's L). Losses are the adversarial ones, without
    other regularizers.
    """

    name = "consensus"

    def __init__(self, weight: float = 10.0, full: bool = True):
        self.weight = _positive("consensus.weight", weight)
        self.full = bool(full)
        self.loss: Loss | None = None

    def bind(self, loss: Loss) -> None:
        self.loss = loss

    def d_term(self, batch: Batch) -> torch.Tensor:
        sq = _sum_sq_grads(self.loss.d(batch.d_real, batch.d_fake), _trainable(batch.D))
        if self.full:
            fake = batch.G(batch.z, batch.fake_c)
            loss_g = self.loss.g(batch.D(fake, batch.fake_c))
            sq = sq + _sum_sq_grads(loss_g, _trainable(batch.G))
        return self.weight * 0.5 * sq

    def g_term(self, batch: Batch) -> torch.Tensor:
        sq = _sum_sq_grads(self.loss.g(batch.d_fake), _trainable(batch.G))
        if self.full:
            D = batch.D
            flags = [p.requires_grad for p in D.parameters()]
            D.requires_grad_(True)
            try:
                loss_d = self.loss.d(D(batch.real, batch.real_c), D(batch.fake, batch.fake_c))
                sq = sq + _sum_sq_grads(loss_d, list(D.parameters()))
            finally:
                for p, flag in zip(D.parameters(), flags):
                    p.requires_grad_(flag)
        return self.weight * 0.5 * sq


class LabelSmoothing(Regularizer):
    """One-sided label smoothing (Salimans et al. 2016, Sec. 3.4): D's target for real
    data is alpha (0.9) instead of 1, fakes keep 0. With logits l, the cross-entropy
    with target alpha is softplus(-l) + (1 - alpha) * l, so the term added to the
    logistic D loss is (1 - alpha) * E[D(x)]. Only for the sigmoid cross-entropy losses."""

    name = "label_smoothing"
    first_order = True

    def __init__(self, real_target: float = 0.9):
        if not 0.0 < real_target <= 1.0:
            raise ConfigError(
                f"regularizer.label_smoothing.real_target must be in (0, 1], got {real_target}"
            )
        self.real_target = float(real_target)

    def bind(self, loss: Loss) -> None:
        if not getattr(loss, "logistic", False):
            raise ConfigError(
                f"regularizer=label_smoothing smooths the sigmoid cross-entropy target and "
                f"needs loss=minimax, nonsaturating (or an f-GAN loss with divergence=gan), "
                f"not loss={loss.name}"
            )

    def d_term(self, batch: Batch) -> torch.Tensor:
        return (1.0 - self.real_target) * batch.d_real.mean()


class FeatureMatching(Regularizer):
    """Feature matching (Salimans et al. 2016, Sec. 3.1): ||E f(x) - E f(G(z))||_2^2 on
    D's penultimate features f. ``replace_g_loss=true`` (the paper's use) makes it G's
    whole objective; false adds it, times ``weight``, to the adversarial G loss."""

    name = "feature_matching"
    needs_features = True
    first_order = True

    def __init__(self, weight: float = 1.0, replace_g_loss: bool = True):
        self.weight = _positive("feature_matching.weight", weight)
        self.replaces_g_loss = bool(replace_g_loss)

    def g_term(self, batch: Batch) -> torch.Tensor:
        diff = batch.f_real.mean(dim=0) - batch.f_fake.mean(dim=0)
        return self.weight * diff.pow(2).sum()


class HistoricalAveraging(Regularizer):
    """Historical averaging (Salimans et al. 2016, Sec. 3.3): each player's cost gets
    weight * ||theta - (1/t) sum_{i=1..t} theta[i]||^2, theta[i] its parameters at its
    i-th update (this one included; the average is a constant, not differentiated).
    The running means and counts are in ``state_dict``, so a resumed run continues
    exactly. t counts the player's own updates (n_critic per step for D)."""

    name = "historical_averaging"
    first_order = True

    def __init__(self, weight: float = 1.0):
        self.weight = _positive("historical_averaging.weight", weight)
        self.count = {"D": 0, "G": 0}
        self.mean: dict[str, dict[str, torch.Tensor]] = {"D": {}, "G": {}}

    def _term(self, player: str, module: nn.Module) -> torch.Tensor:
        params = dict(module.named_parameters())
        mean = self.mean[player]
        with torch.no_grad():
            self.count[player] += 1
            t = self.count[player]
            for name, p in params.items():
                m = mean.get(name)
                if m is None or t == 1:
                    mean[name] = p.detach().clone()
                else:
                    if m.device != p.device:
                        m = mean[name] = m.to(p.device)
                    m.add_(p.detach() - m, alpha=1.0 / t)
        sq = torch.stack([(p - mean[n]).pow(2).sum() for n, p in params.items()]).sum()
        return self.weight * sq

    def d_term(self, batch: Batch) -> torch.Tensor:
        return self._term("D", batch.D)

    def g_term(self, batch: Batch) -> torch.Tensor:
        return self._term("G", batch.G)

    def state_dict(self) -> dict:
        return {
            "count": dict(self.count),
            "mean": {
                k: {n: t.detach().cpu().clone() for n, t in v.items()} for k, v in self.mean.items()
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.count = {k: int(v) for k, v in state["count"].items()}
        self.mean = {k: {n: t.clone() for n, t in v.items()} for k, v in state["mean"].items()}


def dragan_perturb(x: torch.Tensor, scale: float = 0.5, n_out: int | None = None) -> torch.Tensor:
    """DRAGAN's points near the data, as the authors' code draws them
    (github.com/kodalinaveen3/DRAGAN, DRAGAN.ipynb): x_p = x + scale * std(x) * u with
    u ~ U[0, 1] per entry and std(x) the (population) standard deviation of the whole
    batch, then x_hat = x + alpha (x_p - x), alpha ~ U[0, 1] per D output (one per sample,
    or per pack of a PacGAN D). So delta = x_hat - x = alpha * scale * std(x) * u lies in
    [0, scale * std(x)], with mean scale * std(x) / 4 and standard deviation
    scale * std(x) * sqrt(1/9 - 1/16)."""
    n_out = x.shape[0] if n_out is None else n_out
    u = torch.rand_like(x)
    alpha = torch.rand(n_out, device=x.device, dtype=x.dtype)
    alpha = alpha.repeat_interleave(x.shape[0] // n_out).view(-1, *[1] * (x.dim() - 1))
    return x + alpha * (scale * x.std(unbiased=False) * u)


class DRAGANPenalty(Regularizer):
    """DRAGAN (Kodali et al. 2017, "On Convergence and Stability of GANs", Sec. 4):
    weight * E[(||grad_x D(x + delta)||_2 - k)^2] on real samples x with small
    perturbations delta, keeping D's gradients near the data manifold bounded (the
    paper's remedy for the sharp gradients behind mode collapse). weight (lambda) = 10,
    k = 1. delta follows the authors' code (``dragan_perturb``, ``scale`` = 0.5 times
    the batch's std); the paper writes delta ~ N(0, cI). The gradient norm is taken as
    in ``GradientPenalty`` (``penalty_grad`` with create_graph, one norm per D output); a
    conditional D is evaluated at the real sample's label."""

    name = "dragan"

    def __init__(self, weight: float = 10.0, scale: float = 0.5, k: float = 1.0):
        self.weight = _positive("dragan.weight", weight)
        self.scale = _positive("dragan.scale", scale)
        if not k >= 0:
            raise ConfigError(f"regularizer.dragan.k must be >= 0, got {k}")
        self.k = float(k)

    def d_term(self, batch: Batch) -> torch.Tensor:
        real = batch.real.detach()
        x_hat = dragan_perturb(real, self.scale, batch.d_real.shape[0]).requires_grad_(True)
        out = batch.D(x_hat, batch.real_c)
        (grad,) = penalty_grad(out.sum(), x_hat, create_graph=True)
        norm = _per_output(grad, out.shape[0]).norm(dim=1)
        return self.weight * (norm - self.k).pow(2).mean()

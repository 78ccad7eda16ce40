"""The objective: an adversarial loss plus any regularizers, as two phases.

The training loop calls ``d_loss`` n_critic times and ``g_loss`` once per
generator step; each returns ``(loss, stats)`` and the loop does backward() and
step(). Everything that differs between GAN papers' objectives lives here (the
loss) or in a ``Regularizer`` (gradient penalties, R1, clipping, ...), never in
the loop. Phases follow the split of StyleGAN2-ADA's loss (Dmain/Dreg/Gmain).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ganrun.losses import Loss
from ganrun.training.precision import penalty_grad

__all__ = ["Batch", "Objective", "Regularizer", "penalty_grad"]


@dataclass
class Batch:
    """What one phase sees. Regularizers read from it and may add to ``extra``."""

    G: nn.Module
    D: nn.Module
    real: torch.Tensor
    real_c: torch.Tensor | None
    fake: torch.Tensor
    fake_c: torch.Tensor | None
    z: torch.Tensor
    d_real: torch.Tensor | None  # D's output on real data (None in the G phase)
    d_fake: torch.Tensor
    step: int
    # D's penultimate features (only when an active regularizer sets needs_features);
    # in the G phase f_real is computed without a graph
    f_real: torch.Tensor | None = None
    f_fake: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Regularizer:
    """A term added to D's and/or G's loss, or an action after D's step.

    ``d_term``/``g_term`` return a scalar tensor (already weighted) or None.
    ``interval`` > 1 applies the term lazily every ``interval`` steps, scaled by
    ``interval`` (Karras et al. 2020, StyleGAN2, Sec. 3.1). ``replaces_g_loss``:
    G optimizes this regularizer's ``g_term`` *instead of* the adversarial loss
    (feature matching, Salimans et al. 2016, Sec. 3.1); the adversarial value is
    still reported as ``loss/g``. ``bind(loss)`` is called once with the
    objective's loss: refuse an incompatible loss there (ConfigError), or keep
    it when the term needs it.
    """

    name = "regularizer"
    interval = 1
    needs_real_grad = False  # R1-style penalties need real.requires_grad_()
    needs_features = False  # feature matching, InfoGAN's Q head: D.forward_features
    replaces_g_loss = False
    # True when the term takes no second derivative through G or D (no autograd.grad
    # with create_graph). torch.compile does not support double backward, so on steps
    # where a term that is not first-order is active the Objective runs the uncompiled
    # networks (trainer.compile); the default, False, is the safe one for a new term.
    # Take every gradient of a penalty with ``penalty_grad`` (correct under fp16).
    first_order = False

    def bind(self, loss: Loss) -> None:
        return None

    def d_term(self, batch: Batch) -> torch.Tensor | None:
        return None

    def g_term(self, batch: Batch) -> torch.Tensor | None:
        return None

    def after_d_step(self, D: nn.Module) -> None:
        return None

    def bind_optimizers(self, opt_g, opt_d) -> None:
        """Called once by ``build`` with the players' optimizers (a term that mirrors
        D's update, e.g. unrolled GANs, reads D's optimizer state at call time)."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


class Objective:
    def __init__(
        self,
        loss: Loss,
        regularizers: dict[str, Regularizer] | None = None,
        num_classes: int = 0,
        augment=None,
    ):
        """``augment``: a differentiable transformation applied to every image D sees,
        real and generated, in both phases (ganrun.augment.DiffAugment), or None."""
        self.loss = loss
        self.regularizers = dict(regularizers or {})
        self.num_classes = int(num_classes)
        self.augment = augment
        for reg in self.regularizers.values():
            reg.bind(loss)

    # -- sampling -------------------------------------------------------------
    def sample_labels(self, n: int, device) -> torch.Tensor | None:
        """Class labels for generated samples: uniform over the classes."""
        if self.num_classes < 1:
            return None
        return torch.randint(0, self.num_classes, (n,), device=device)

    def _generate(self, G, n: int, device, grad: bool):
        z = G.sample_z(n, device=device)
        c = self.sample_labels(n, device)
        with torch.set_grad_enabled(grad):
            fake = G(z, c)
        return z, c, fake

    # -- phases ---------------------------------------------------------------
    def d_loss(self, G, D, real, real_c, step: int):
        n = real.shape[0]
        z, fake_c, fake = self._generate(G, n, real.device, grad=False)
        if self.augment is not None:  # D (and its regularizers) see T(x) and T(G(z))
            real, fake = self.augment(real), self.augment(fake)
        active = self._active(step)
        G, D = self._networks(active, "d_term", G, D)
        if any(r.needs_real_grad for _, r in active):
            real = real.detach().requires_grad_(True)
        f_real = f_fake = None
        if any(r.needs_features for _, r in active):
            d_real, f_real = D.forward_features(real, real_c)
            d_fake, f_fake = D.forward_features(fake, fake_c)
            f_real, f_fake = f_real.float(), f_fake.float()
        else:
            d_real = D(real, real_c)
            d_fake = D(fake, fake_c)
        # losses and terms in fp32 from autocast's bf16/fp16 outputs (trainer.precision)
        d_real, d_fake = d_real.float(), d_fake.float()
        loss = self.loss.d(d_real, d_fake)
        stats = {"loss/d": loss.detach(), **self.loss.observe_d(d_real.detach(), d_fake.detach())}
        batch = Batch(G, D, real, real_c, fake, fake_c, z, d_real, d_fake, step, f_real, f_fake)
        for name, reg in active:
            term = reg.d_term(batch)
            if term is not None:
                term = term * reg.interval
                stats[f"reg/{name}"] = term.detach()
                loss = loss + term
        stats.update(self._d_outputs(d_real, d_fake))
        return loss, stats

    def g_loss(self, G, D, real, real_c, step: int):
        n = real.shape[0]
        active = self._active(step)
        G, D = self._networks(active, "g_term", G, D)
        z, fake_c, fake = self._generate(G, n, real.device, grad=True)
        if self.augment is not None:  # G's gradient flows back through T (DiffAugment)
            fake = self.augment(fake)
        f_real = f_fake = None
        if any(r.needs_features for _, r in active):
            d_fake, f_fake = D.forward_features(fake, fake_c)
            with torch.no_grad():
                if self.augment is not None:
                    real = self.augment(real)
                _, f_real = D.forward_features(real, real_c)
            f_real, f_fake = f_real.float(), f_fake.float()
        else:
            d_fake = D(fake, fake_c)
        d_fake = d_fake.float()
        loss = self.loss.g(d_fake)
        stats = {"loss/g": loss.detach(), **self.loss.observe_g(d_fake.detach())}
        if any(r.replaces_g_loss for _, r in active):
            loss = torch.zeros((), device=loss.device, dtype=loss.dtype)
        batch = Batch(G, D, real, real_c, fake, fake_c, z, None, d_fake, step, f_real, f_fake)
        for name, reg in active:
            term = reg.g_term(batch)
            if term is not None:
                term = term * reg.interval
                stats[f"reg/{name}"] = term.detach()
                loss = loss + term
        return loss, stats

    def after_d_step(self, D) -> None:
        for reg in self.regularizers.values():
            reg.after_d_step(D)

    def bind_optimizers(self, opt_g, opt_d) -> None:
        for reg in self.regularizers.values():
            reg.bind_optimizers(opt_g, opt_d)

    @staticmethod
    def _networks(active, term: str, G, D):
        """G and D for a phase: uncompiled (``torch.compile``'s ``_orig_mod``) when an
        active term of that phase (``term``: "d_term"/"g_term") is not first-order."""
        second = [
            r
            for _, r in active
            if not r.first_order and getattr(type(r), term) is not getattr(Regularizer, term)
        ]
        if second:
            return getattr(G, "_orig_mod", G), getattr(D, "_orig_mod", D)
        return G, D

    def _active(self, step: int):
        return [(n, r) for n, r in self.regularizers.items() if step % max(1, r.interval) == 0]

    def _d_outputs(self, d_real, d_fake) -> dict[str, torch.Tensor]:
        d_real, d_fake = d_real.detach().float(), d_fake.detach().float()
        if self.loss.output == "logit":
            return {"D/real": torch.sigmoid(d_real).mean(), "D/fake": torch.sigmoid(d_fake).mean()}
        return {"D/real": d_real.mean(), "D/fake": d_fake.mean()}

    # -- checkpointing ----------------------------------------------------------
    # the loss's own training state (BEGAN's k_t) sits beside the regularizers' under
    # this key (no regularizer file is called "_loss"); absent when the loss has none
    LOSS_STATE = "_loss"

    def state_dict(self) -> dict:
        state = {name: reg.state_dict() for name, reg in self.regularizers.items()}
        loss_state = self.loss.state_dict()
        if loss_state:
            state[self.LOSS_STATE] = loss_state
        return state

    def load_state_dict(self, state: dict) -> None:
        for name, reg in self.regularizers.items():
            if name in state:
                reg.load_state_dict(state[name])
        if self.LOSS_STATE in state:
            self.loss.load_state_dict(state[self.LOSS_STATE])

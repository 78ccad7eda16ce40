"""Discriminator rejection sampling (DRS): Azadi, Olsson, Darrell, Goodfellow & Odena
2019, "Discriminator Rejection Sampling", ICLR (arXiv:1810.06758).

Why: a generator puts mass where the data has none. On the 2-D grid a continuous G
fed a connected latent cannot avoid drawing bridges between modes (docs/RESULTS.md),
and no amount of training removes them. A discriminator can see them: for the
standard GAN loss the optimal discriminator is D*(x) = p_d(x) / (p_d(x) + p_g(x))
(Goodfellow et al. 2014, Prop. 1), so its logit is log p_d(x) / p_g(x), and keeping
a sample of G with probability p_d / (M p_g) = exp(logit(x) - logit_max) draws from
p_d exactly (Azadi et al., Sec. 3.1).

What runs (Azadi et al., Sec. 3.2 and Alg. 1):
  1. The GAN's discriminator is not the optimal one for the final G, so DRS trains it
     further on the frozen generator. Here a per-sample discriminator of the recipe's
     architecture is trained with the logistic loss on G's samples against the data
     (``fit_estimator``). It starts from the checkpoint's D when that D scores one
     sample at a time; a packed D (PacGAN, ``model.D.pack`` > 1) scores m samples
     jointly and is no density ratio, so with packing it starts fresh (``init``
     says which in the protocol). The paper fine-tunes its own D; starting fresh is
     our deviation, for that reason.
  2. logit_max (the paper's D*_M) is the largest logit of a burn-in set of G's
     samples, raised whenever a larger one appears while sampling.
  3. A candidate x is accepted with probability sigmoid(F(x)), eq. (8):
         F(x) = logit(x) - logit_max - log(1 - exp(logit(x) - logit_max - eps)) - gamma
     with gamma, which trades exactness for the acceptance rate, set for each batch of
     candidates to the ``percentile``-th percentile of F over the batch (the paper's
     95th) and eps = 1e-6 for numerical stability.

Scores of a rejection-sampled generator are not those of the generator: the protocol
of every score measured through a sampler says so (``describe``), and ``ganrun eval``
never puts them in one table with plain samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from ganrun.config import RejectionConfig
from ganrun.errors import CheckpointError, ConfigError, GanrunError
from ganrun.models.base import truncation_args
from ganrun.rng import fork_rng

log = logging.getLogger(__name__)

METHODS = ("drs",)
ESTIMATOR_FORMAT = "ganrun-drs-estimator"
EPS = 1e-6  # Azadi et al., eq. (8)


@dataclass
class RejectionSettings(RejectionConfig):
    """``rejection.*`` of ``ganrun eval`` / ``ganrun sample``: the fields and defaults are
    the schema's (ganrun.config.RejectionConfig); this adds the checks."""

    @classmethod
    def from_config(cls, node: DictConfig | dict | None) -> RejectionSettings:
        if node is None:
            return cls()
        d = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def enabled(self) -> bool:
        return self.method is not None

    def check(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ConfigError(
                f"rejection.method={self.method} is unknown; choose from: "
                f"{', '.join(METHODS)} (or null for plain samples)"
            )
        for key in ("steps", "batch_size", "burn_in", "max_draws"):
            if getattr(self, key) < 1:
                raise ConfigError(f"rejection.{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ConfigError(f"rejection.lr must be > 0, got {self.lr}")
        if self.percentile is not None and not 0 <= self.percentile <= 100:
            raise ConfigError(
                f"rejection.percentile must be in [0, 100] (or null for gamma = 0), "
                f"got {self.percentile}"
            )

    def fit_key(self) -> dict[str, Any]:
        """The settings the fitted estimator depends on (not the sampling ones)."""
        return {k: getattr(self, k) for k in ("steps", "batch_size", "lr", "seed")}


# ------------------------------------------------------------------------ estimator
def check_unconditional(train_cfg: DictConfig, state: dict[str, Any], where: str) -> None:
    """DRS estimates p_data(x) / p_G(x) without labels: class-conditional generators
    are refused (before anything is fitted or written). The model decides, by the rule
    build_models uses, not the dataset: a DCGAN trained on labelled MNIST is fine."""
    from ganrun.build import takes_labels

    labels = int((state.get("data") or {}).get("num_classes", 0) or 0)
    if labels and takes_labels(train_cfg.model.G):
        raise ConfigError(
            f"{where}: rejection sampling supports unconditional models only; drop rejection.method"
        )


def estimator_config(train_cfg: DictConfig) -> tuple[DictConfig, bool]:
    """(D's config with pack 1, whether the checkpoint's D has that same shape)."""
    node = OmegaConf.create(OmegaConf.to_container(train_cfg.model.D, resolve=True))
    pack = int(node.get("pack", 1) or 1)
    if "pack" in node:
        node.pack = 1
    return node, pack == 1


def build_estimator(train_cfg: DictConfig, state: dict[str, Any], data_shape) -> tuple:
    """(per-sample D, init) where init is "gan-D" (the checkpoint's D) or "fresh"."""
    from ganrun.build import build_network

    node, same_shape = estimator_config(train_cfg)
    D = build_network(node, data_shape)  # unconditional: no num_classes
    if same_shape and "D" in state.get("models", {}):
        try:
            D.load_state_dict(state["models"]["D"])
            return D, "gan-D"
        except RuntimeError as e:
            raise CheckpointError(
                f"the checkpoint's D does not match its config: {str(e).splitlines()[0][:160]}"
            ) from None
    return D, "fresh"


def fit_estimator(
    G: torch.nn.Module,
    D: torch.nn.Module,
    data,
    settings: RejectionSettings,
    device: torch.device,
) -> dict[str, Any]:
    """Train D to tell G's samples (G frozen, eval mode) from the data, with the logistic
    loss log(1 + e^-D(real)) + log(1 + e^D(fake)) and Adam (lr decayed linearly to 0).
    Returns what the fit did: steps, the last losses, seconds."""
    D.to(device).train().requires_grad_(True)
    G.eval()
    opt = torch.optim.Adam(D.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / settings.steps)
    g = torch.Generator().manual_seed(settings.seed)
    real_batches = data.batches(settings.batch_size, seed=settings.seed + 1, device=device)
    start = time.perf_counter()
    recent: list[torch.Tensor] = []  # the last 100 losses, read back every 500 steps only
    with fork_rng(device):
        for step in range(settings.steps):
            real = next(real_batches)[0]
            with torch.no_grad():
                fake = G(G.sample_z(real.shape[0], device=device, generator=g))
            loss = F.softplus(-D(real)).mean() + F.softplus(D(fake)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            recent = [*recent[-99:], loss.detach()]
            if (step + 1) % 500 == 0 or step + 1 == settings.steps:
                if not bool(torch.isfinite(torch.stack(recent)).all()):
                    raise GanrunError(
                        f"the rejection estimator diverged by step {step + 1} (loss nan/inf); "
                        f"lower rejection.lr"
                    )
    D.eval().requires_grad_(False)
    return {
        "steps": settings.steps,
        # mean of the last 100 steps; 2 log 2 = 1.386 is chance
        "loss": float(torch.stack(recent).mean()),
        "seconds": round(time.perf_counter() - start, 3),
    }


def save_estimator(path: Path, D: torch.nn.Module, meta: dict[str, Any]) -> Path:
    from ganrun import checkpoint as ckpt

    payload = {"format": ESTIMATOR_FORMAT, "state_dict": D.state_dict(), "meta": meta}
    ckpt.atomic_save(ckpt.plain(payload, where="rejection estimator"), Path(path))
    return Path(path)


def load_estimator(path: Path, D: torch.nn.Module) -> dict[str, Any]:
    """Load weights saved by ``save_estimator`` into D (tensors only: cannot run code)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"{path} is not a readable rejection estimator: {first[:160]}"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != ESTIMATOR_FORMAT:
        raise CheckpointError(f"{path} is not a ganrun rejection estimator")
    try:
        D.load_state_dict(obj["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path} does not fit this model's discriminator: {str(e).splitlines()[0][:160]}"
        ) from None
    return dict(obj.get("meta") or {})


def estimator_path(checkpoint: Path, generator: str, settings: RejectionSettings) -> Path:
    """<run dir>/rejection/<checkpoint stem>-<G or G_ema>-<digest of the fit settings>.pt"""
    from ganrun import checkpoint as ckpt

    key = json.dumps({**settings.fit_key(), "generator": generator}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return ckpt.run_dir_of(checkpoint) / "rejection" / f"{checkpoint.stem}-{generator}-{digest}.pt"


def generator_digest(G: torch.nn.Module) -> str:
    """SHA-256 of G's weights and buffers: an estimator belongs to exactly one G (a
    best.pt, say, is rewritten as training goes on)."""
    h = hashlib.sha256()
    for name, t in G.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------ sampling
class RejectionSampler:
    """Draws accepted samples of G (see the module doc). ``generate`` has the signature
    of ganrun.metrics.sampling.generate without G; ``describe()`` is the protocol."""

    def __init__(
        self,
        G: torch.nn.Module,
        D: torch.nn.Module,
        settings: RejectionSettings,
        device: torch.device,
        *,
        init: str,
        fit: dict[str, Any],
    ):
        self.G, self.D, self.s, self.device = G, D.to(device).eval(), settings, device
        self.init, self.fit = init, fit
        self.last: dict[str, Any] = {}
        was = G.training
        with fork_rng(device), torch.no_grad():
            G.eval()
            try:
                g = torch.Generator().manual_seed(settings.seed + 2)
                self.burn_in_max = max(
                    float(self._logits(self._candidates(b, g, None)).max())
                    for b in _chunks(settings.burn_in, max(settings.batch_size, 1000))
                )
            finally:
                G.train(was)

    def _candidates(self, n: int, g: torch.Generator, truncation: float | None) -> torch.Tensor:
        trunc, g_kwargs = truncation_args(self.G, truncation)  # in z, or in W (StyleGAN)
        z = self.G.sample_z(n, device=self.device, generator=g, truncation=trunc)
        return self.G(z, None, **g_kwargs)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.D(x).reshape(-1).double().cpu()

    def acceptance_probability(self, logits: torch.Tensor, logit_max: float) -> torch.Tensor:
        """sigmoid(F(x)) of eq. (8), gamma from this batch's percentile of F. With
        gamma = 0 (percentile None) this is exp(logit - logit_max) up to eps: exact
        rejection sampling when the logit is log p_d / p_g."""
        d = logits - logit_max
        f = d - torch.log1p(-torch.exp(d - EPS))
        if self.s.percentile is None:
            return torch.sigmoid(f)
        gamma = torch.quantile(f, self.s.percentile / 100.0)
        return torch.sigmoid(f - gamma)

    def generate(
        self, n: int, *, seed: int, batch_size: int, truncation: float | None = None
    ) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed))
        was = self.G.training
        out, kept, drawn = [], 0, 0
        logit_max = self.burn_in_max
        with fork_rng(self.device), torch.no_grad():
            self.G.eval()
            try:
                while kept < n:
                    if drawn >= self.s.max_draws * n:
                        raise GanrunError(
                            f"rejection sampling accepted {kept} of {drawn} candidates "
                            f"(< 1 in {self.s.max_draws}); raise rejection.max_draws or "
                            f"lower rejection.percentile"
                        )
                    x = self._candidates(batch_size, g, truncation)
                    logits = self._logits(x)
                    logit_max = max(logit_max, float(logits.max()))
                    p = self.acceptance_probability(logits, logit_max)
                    keep = torch.rand(p.shape, generator=g, dtype=p.dtype) < p
                    out.append(x.float().cpu()[keep])
                    kept += int(keep.sum())
                    drawn += x.shape[0]
            finally:
                self.G.train(was)
        self.last = {"drawn": drawn, "accepted": n, "acceptance": n / drawn}
        return torch.cat(out)[:n]

    def describe(self) -> dict[str, Any]:
        """What a score measured through this sampler depends on (its protocol part)."""
        s = self.s
        return {
            "method": s.method,
            "paper": "Azadi et al. 2019 (arXiv:1810.06758)",
            "percentile": s.percentile,
            "burn_in": s.burn_in,
            "estimator": {"init": self.init, **s.fit_key()},
        }


def _chunks(n: int, size: int):
    while n > 0:
        yield min(size, n)
        n -= size


def prepare(
    settings: RejectionSettings,
    G: torch.nn.Module,
    train_cfg: DictConfig,
    state: dict[str, Any],
    data,
    device: torch.device,
    *,
    checkpoint: Path | None = None,
    generator: str = "G",
) -> RejectionSampler:
    """The sampler for G: the estimator is fitted once and kept beside the checkpoint
    (``estimator_path``); a later call with the same fit settings loads it."""
    check_unconditional(train_cfg, state, str(checkpoint) if checkpoint else "this model")
    shape = tuple((state.get("data") or {}).get("shape") or data.data_shape)
    D, init = build_estimator(train_cfg, state, shape)
    path = estimator_path(checkpoint, generator, settings) if checkpoint is not None else None
    digest = generator_digest(G)
    meta = load_estimator(path, D) if path is not None and path.is_file() else None
    if meta is not None and meta.get("generator_sha256") == digest:
        fit, init = meta.get("fit", {}), meta.get("init", init)
        log.info("rejection: loaded the estimator fitted earlier from %s", path)
    else:
        if meta is not None:  # same name, another G: the checkpoint was rewritten
            log.info("rejection: %s was fitted for other weights; fitting again", path)
            D, init = build_estimator(train_cfg, state, shape)
        log.info("rejection: fitting the estimator (%d steps, %s)", settings.steps, init)
        fit = fit_estimator(G, D, data, settings, device)
        log.info("rejection: estimator loss %.4f after %.0f s", fit["loss"], fit["seconds"])
        if path is not None:
            meta = {
                "fit": fit,
                "init": init,
                "settings": settings.fit_key(),
                "generator_sha256": digest,
            }
            save_estimator(path, D, meta)
    return RejectionSampler(G, D, settings, device, init=init, fit=fit)

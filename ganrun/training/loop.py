"""One training loop for every model; it knows no model names.

Per generator step (Goodfellow et al. 2014, Algorithm 1): ``n_critic``
discriminator steps, each on a fresh real batch and fresh z, then one generator
step; then the EMA of G, logging, progress grids and checkpoints. What differs
between papers is data: the objective (loss + regularizers), the optimizer
recipe and its schedule, ``n_critic``, and the networks' constructor arguments.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import ganrun
from ganrun import checkpoint as ckpt
from ganrun import fsio, viz
from ganrun.build import Built
from ganrun.errors import CheckpointError, DivergenceError
from ganrun.logfiles import to_log_files
from ganrun.models.base import count_parameters
from ganrun.rng import fork_rng
from ganrun.signals import STOP, signal_name
from ganrun.training import distributed
from ganrun.training.ema import (
    copied_buffers,
    copy_weights,
    standing_batch_norm_stats,
    standing_stats_seed,
    update_ema,
)
from ganrun.training.guard import (
    GuardState,
    module_parts,
    nonfinite_parts,
    nonfinite_values,
    optimizer_parts,
    rollback_target,
)
from ganrun.training.hooks import Hook
from ganrun.training.loggers import make_writer
from ganrun.training.precision import Precision, channels_last_batch, prepare_networks
from ganrun.training.tb import NullWriter

log = logging.getLogger(__name__)


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])
    )


def critic_steps(t, step: int) -> int:
    """D steps at generator step ``step``: ``n_critic``, or ``n_critic_warmup`` during the
    first ``n_critic_warmup_steps`` steps and every ``n_critic_warmup_every``-th step."""
    boost = t.n_critic_warmup
    if boost is not None and (
        step < t.n_critic_warmup_steps
        or (t.n_critic_warmup_every > 0 and step % t.n_critic_warmup_every == 0)
    ):
        return int(boost)
    return int(t.n_critic)


def batches_before(t, step: int) -> int:
    """Real batches D has consumed before generator step ``step`` (where a resumed
    run's data stream starts)."""
    base = step * int(t.n_critic)
    if t.n_critic_warmup is None:
        return base
    first = min(step, int(t.n_critic_warmup_steps))
    every = int(t.n_critic_warmup_every)
    # boosted steps: the first `first`, plus multiples of `every` in [first, step)
    later = (-(-step // every) - -(-first // every)) if every > 0 and step > first else 0
    return base + (first + later) * (int(t.n_critic_warmup) - int(t.n_critic))


def _descend(
    opt, loss, params, stats, norm_key: str, logging_now: bool, scaler=None, dist=None
) -> torch.Tensor | None:
    """One optimizer step on ``loss``; on log steps the gradient norm goes into ``stats``.
    Under torchrun the gradients are averaged over ranks between backward() and step().
    With an fp16 ``scaler``: backward of the scaled loss, unscale, and the step that the
    scaler skips when a gradient is inf/NaN; returns whether the step was taken (a 0-d
    bool tensor, no sync: the gradient norm is finite), else None."""
    opt.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()
    distributed.average_gradients(params, dist)
    if scaler is None:
        if logging_now:
            stats[norm_key] = _grad_norm(params)
        opt.step()
        return None
    scaler.unscale_(opt)
    norm = _grad_norm(params)  # the scaler skips the step iff some gradient is inf/NaN
    if logging_now:
        stats[norm_key] = norm
    scaler.step(opt)
    scaler.update()
    return torch.isfinite(norm)


def _count(n: int) -> str:
    """12, 4.2k, 3.57M: parameter counts that a small model does not print as 0.00M."""
    if n < 1000:
        return str(n)
    return f"{n / 1e3:.1f}k" if n < 1e6 else f"{n / 1e6:.2f}M"


class Trainer:
    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        built: Built,
        choices: dict[str, str] | None = None,
        hooks: list[Hook] | None = None,
    ):
        self.cfg, self.run_dir, self.b = cfg, Path(run_dir), built
        self.hooks: list[Hook] = list(hooks or [])
        self.metrics: dict[str, float] = {}  # latest values returned by hooks
        self.t = cfg.trainer
        # the D-step schedule as plain ints: read every step, so not through DictConfig
        self.critic = types.SimpleNamespace(
            **{
                k: (None if self.t[k] is None else int(self.t[k]))
                for k in (
                    "n_critic",
                    "n_critic_warmup",
                    "n_critic_warmup_steps",
                    "n_critic_warmup_every",
                )
            }
        )
        self.choices = dict(choices or {})
        self.step = 0  # completed generator steps
        self.elapsed = 0.0  # training seconds across resumes
        self.device = built.device
        self.writer: NullWriter = NullWriter()
        g = torch.Generator().manual_seed(int(cfg.seed) * 7919 + 17)
        self.fixed_z = built.G.sample_z(self._n_fixed(), device=self.device, generator=g)
        nc = built.data.num_classes
        self.fixed_c = (torch.arange(self._n_fixed(), device=self.device) % nc) if nc > 0 else None
        self._ema_stats_step: int | None = None  # step of G_ema's last standing statistics
        # buffers update_ema copies, paired once here rather than on every step (loading a
        # state dict copies into the same tensors, so the pairs stay valid on resume)
        self._ema_buffers = copied_buffers(built.G_ema, built.G) if built.G_ema is not None else []
        self.guard = GuardState()  # rollbacks so far and their lr factor (trainer.on_nan)
        self._finite_step: int | None = None  # step whose weights last passed check_finite
        self.stopped_by: int | None = None  # the signal that stopped the loop early
        self._stop_agreed = False  # a stop signal seen by some rank at the current step
        # torchrun: this process's rank (only rank 0 logs, draws, evaluates, checkpoints)
        self.dist = distributed.current()
        self.precision = Precision(str(self.t.precision), self.device)
        # the networks the phases run: G and D in channels_last / SyncBatchNorm /
        # compiled as trainer.* asks; b.G and b.D stay the modules that are checkpointed
        self.G_run, self.D_run = prepare_networks(built, self.t, self.dist)
        self._rng_ranks: tuple[int, list] | None = None  # (step, every rank's RNG state)
        if self.dist.enabled:  # one set of weights; each rank its own z from here on
            for net in (built.G, built.D, built.G_ema):
                if net is not None:
                    distributed.broadcast_module(net, self.dist)
            distributed.reseed(distributed.rank_seed(int(cfg.seed), self.dist.rank))
        self.last_checkpoint: Path | None = None

    def _n_fixed(self) -> int:
        # 2-D data is shown as a scatter plot, which needs many more points
        return (
            max(int(self.t.n_fixed), 2000) if self.b.data.kind == "points" else int(self.t.n_fixed)
        )

    # ------------------------------------------------------------------ state
    def eval_generator(self) -> torch.nn.Module:
        """The generator every picture, metric and sample reads: G_ema when the run
        keeps one, with BatchNorm statistics of its own weights (recomputed once per
        step, see ganrun.training.ema), else G. Raises DivergenceError rather than
        hand out non-finite weights (checked once per step)."""
        b = self.b
        self.check_finite()  # before the statistics: they would only spread a NaN
        if b.G_ema is not None and self._ema_stats_step != self.step:
            standing_batch_norm_stats(
                b.G_ema,
                batch_size=int(self.t.batch_size),
                seed=standing_stats_seed(int(self.cfg.seed)),
                device=self.device,
            )
            self._ema_stats_step = self.step
            bad = nonfinite_parts({"G_ema buffers": list(b.G_ema.buffers())})
            if bad:
                raise DivergenceError(self.step, bad)
        return b.G if b.G_ema is None else b.G_ema

    def check_finite(self, values: dict[str, float] | None = None) -> None:
        """The divergence guard (ganrun.training.guard): raise DivergenceError naming
        what is non-finite among ``values`` (logged losses, grad norms) and the weights
        and buffers of G, D and G_ema. The models cost one device sync, and are checked
        once per step unless ``values`` is bad (then they are named too). With
        ``values`` (a log step) under fp16 also the loss scales: one below 1 is how an
        fp16 run diverges (its inf/NaN steps are skipped, ganrun.training.precision)."""
        bad = nonfinite_values(values or {})
        if values is not None:
            bad += self.precision.too_small()
        if bad or self._finite_step != self.step:
            b = self.b
            nets = {"G": b.G, "D": b.D, **({"G_ema": b.G_ema} if b.G_ema is not None else {})}
            parts = {k: v for name, net in nets.items() for k, v in module_parts(name, net).items()}
            bad += nonfinite_parts(parts)
            if not bad:
                self._finite_step = self.step
        if bad:
            raise DivergenceError(self.step, bad)

    @property
    def kimg(self) -> float:
        """Thousands of real images D has seen so far (WGAN's critic warm-up included)."""
        return batches_before(self.critic, self.step) * int(self.t.batch_size) / 1000.0

    def state(self) -> dict[str, Any]:
        b = self.b
        # a stored G_ema carries statistics of its own weights; the guard refuses a
        # non-finite state, so none is ever written under a checkpoint's name
        self.eval_generator()
        bad = nonfinite_parts({**optimizer_parts("G", b.opt_g), **optimizer_parts("D", b.opt_d)})
        if bad:
            raise DivergenceError(self.step, bad)
        return {
            "models": {
                "G": b.G.state_dict(),
                "D": b.D.state_dict(),
                **({"G_ema": b.G_ema.state_dict()} if b.G_ema is not None else {}),
            },
            "optimizers": {"G": b.opt_g.state_dict(), "D": b.opt_d.state_dict()},
            "objective": b.objective.state_dict(),
            "hooks": {h.name: h.state_dict() for h in self.hooks},
            "rng": ckpt.rng_state(),
            **self._rank_rng(),
            # fp16's GradScaler states ({} in fp32/bf16)
            "precision": self.precision.state_dict(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            # with interpolations kept, so `resume=... model.width=32` propagates like a fresh run
            "config_unresolved": OmegaConf.to_container(self.cfg, resolve=False),
            "choices": self.choices,
            "data": {
                "shape": list(b.data.data_shape),
                "num_classes": b.data.num_classes,
                "kind": b.data.kind,
            },
            "elapsed": self.elapsed,
            "guard": self.guard.state_dict(),
            "versions": {"ganrun": str(ganrun.__version__), "torch": str(torch.__version__)},
        }

    def load_state(self, state: dict[str, Any], source: Path) -> None:
        b = self.b
        try:
            b.G.load_state_dict(state["models"]["G"])
            b.D.load_state_dict(state["models"]["D"])
            if b.G_ema is not None:
                if "G_ema" in state["models"]:
                    b.G_ema.load_state_dict(state["models"]["G_ema"])
                else:  # EMA switched on at resume: start it from G
                    copy_weights(b.G_ema, b.G)
            b.opt_g.load_state_dict(state["optimizers"]["G"])
            b.opt_d.load_state_dict(state["optimizers"]["D"])
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "size mismatch" in str(e):
                first = next(
                    (ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), first
                )
            raise CheckpointError(
                f"{source} does not match this model/optimizer (another architecture?): {first[:200]}"
            ) from None
        b.objective.load_state_dict(state.get("objective", {}))
        for h in self.hooks:
            if h.name in state.get("hooks", {}):
                h.load_state_dict(state["hooks"][h.name])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.guard.load_state_dict(state.get("guard") or {})
        self._ema_stats_step = self._finite_step = None
        self.precision.load_state_dict(state.get("precision") or {})
        ckpt.set_rng_state(state["rng"])
        self._load_rank_rng(state)

    def _rank_rng(self) -> dict[str, Any]:
        """Every rank's RNG state (torchrun), gathered at this step's checkpoint; a
        state written at another step (best.pt from an evaluation) has rank 0's only."""
        if not self.dist.enabled or self._rng_ranks is None or self._rng_ranks[0] != self.step:
            return {}
        return {"rng_ranks": self._rng_ranks[1]}

    def _gather_rng(self) -> None:
        """At a checkpoint step (torchrun; collectives, so on every rank): the ranks'
        weights checked to be identical, and every rank's RNG state for the checkpoint."""
        if self.dist.enabled:
            distributed.check_in_sync({"G": self.b.G, "D": self.b.D}, self.dist)
            self._rng_ranks = (self.step, distributed.gather_objects(ckpt.rng_state(), self.dist))

    def _load_rank_rng(self, state: dict[str, Any]) -> None:
        """Rank r continues with its own stored RNG state; a checkpoint of another number
        of ranks (or of one) gives ranks > 0 fresh seeds from (seed, rank, step)."""
        if not self.dist.enabled:
            return
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.dist.world:
            ckpt.set_rng_state(ranks[self.dist.rank])
            return
        if self.dist.is_main:
            log.warning(
                "the checkpoint holds the RNG state of %s rank(s), this run has %d: ranks > 0 "
                "draw from fresh seeds, so this resume is not bit-exact",
                len(ranks) if ranks is not None else 1,
                self.dist.world,
            )
        if self.dist.rank > 0:
            from ganrun.data.base import _mix

            seed = distributed.rank_seed(int(self.cfg.seed), self.dist.rank)
            distributed.reseed(_mix(seed, self.step) % 2**31)

    def save_checkpoint(self) -> Path:
        path = ckpt.save(self.run_dir, self.step, self.state(), keep=int(self.t.keep_checkpoints))
        log.info("checkpoint: %s", path)
        self.last_checkpoint = path
        return path

    # ------------------------------------------------------------------ pictures
    @torch.no_grad()
    def render(self) -> torch.Tensor:
        """A grid (or scatter plot) of the fixed z from G_ema if any, else G (eval mode).
        The global RNG is left untouched, so rendering never changes training."""
        G = self.eval_generator()
        was_training = G.training
        with fork_rng(self.device):
            G.eval()
            x = torch.cat([G(z, c) for z, c in zip(self.fixed_z.split(256), self._split_c(256))])
            G.train(was_training)
        centers = getattr(self.b.data, "centers", None)
        return viz.picture(
            x,
            nrow=int(math.sqrt(x.shape[0])) if x.dim() == 4 else 8,
            centers=centers,
            step=self.step,
        )

    def _split_c(self, size):
        if self.fixed_c is None:
            return [None] * len(self.fixed_z.split(size))
        return list(self.fixed_c.split(size))

    def write_picture(self) -> Path:
        img = self.render()
        self.writer.image("samples/fixed_z", img, self.step)
        path = self.run_dir / "samples" / f"step-{self.step:08d}.png"
        fsio.write_image(img, path, fsio.RUN_DIR_ELSEWHERE)  # atomic; one line on a full disk
        return path

    # ------------------------------------------------------------------ loop
    def run(self) -> dict[str, float]:
        b, t = self.b, self.t
        total = int(t.steps)
        if self.step >= total:
            log.info(
                "nothing to do: the checkpoint is at step %d and trainer.steps=%d", self.step, total
            )
            return {}
        if self.dist.is_main:  # (torchrun: only rank 0 writes the run dir)
            ckpt.clean_temporaries(self.run_dir / ckpt.CKPT_DIR)  # left by a killed write
        if t.deterministic:
            if self.device.type == "cuda":
                # cuBLAS is deterministic only with a fixed workspace (PyTorch's
                # reproducibility notes); without it use_deterministic_algorithms makes
                # the first matmul raise. Read when cuBLAS first starts in the process.
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not t.deterministic
            torch.set_float32_matmul_precision("high")
        # the loggers (logger=...); what an earlier attempt logged after this step's
        # checkpoint is void, so a resumed run's curves do not double back
        self.writer = make_writer(self.cfg, self.run_dir, purge_step=self.step + 1)
        log.info(
            "%s | G %s params, D %s params | %s | device %s | run dir %s",
            self.cfg.model.get("name", "model"),
            _count(count_parameters(b.G)),
            _count(count_parameters(b.D)),
            b.data.describe(),
            self.device,
            self.run_dir,
        )
        if self.step == 0:
            self.writer.text(
                "config", "```\n" + OmegaConf.to_yaml(self.cfg, resolve=True) + "\n```", 0
            )

        batch = int(t.batch_size)
        stream = self._stream()
        b.G.train()
        b.D.train()
        d_params = list(b.D.parameters())
        g_params = list(b.G.parameters())
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        last: dict[str, float] = {}
        interval_start, interval_step = time.perf_counter(), self.step
        bar = self._progress(total)
        installed_here = not STOP.installed  # in-process callers (tests, notebooks)
        STOP.install()
        stop = STOP.deferred()
        run_start = time.perf_counter()
        elapsed0 = self.elapsed
        prec, dist = self.precision, self.dist
        with stop, self._closing(bar), self._handlers(installed_here):
            while self.step < total:
                try:
                    step = self.step
                    logging_now = (step + 1) % t.log_every == 0 or step + 1 == total
                    b.recipe.apply_schedule(
                        b.opt_g, b.opt_d, step, total, lr_scale=self.guard.lr_factor
                    )

                    # ---- discriminator: n_critic steps
                    b.D.requires_grad_(True)
                    for _ in range(critic_steps(self.critic, step)):
                        real, real_c = next(stream)
                        with prec.phase("D"):
                            loss, stats = b.objective.d_loss(
                                self.G_run, self.D_run, real, real_c, step
                            )
                        ok = _descend(
                            b.opt_d, loss, d_params, stats, "grad_norm/d", logging_now,
                            prec.scaler("D"), dist,
                        )  # fmt: skip
                        b.objective.after_d_step(b.D)
                        self._accumulate(sums, counts, stats, ok, "amp/skipped_d")

                    # ---- generator: one step; D's weights need no gradients here
                    b.D.requires_grad_(False)
                    with prec.phase("G"):
                        loss, stats = b.objective.g_loss(self.G_run, self.D_run, real, real_c, step)
                    ok = _descend(
                        b.opt_g, loss, g_params, stats, "grad_norm/g", logging_now,
                        prec.scaler("G"), dist,
                    )  # fmt: skip
                    b.D.requires_grad_(True)
                    self._accumulate(sums, counts, stats, ok, "amp/skipped_g")

                    if b.G_ema is not None:
                        if step < int(t.ema_start):
                            copy_weights(b.G_ema, b.G)
                        else:
                            update_ema(b.G_ema, b.G, b.ema_beta, self._ema_buffers)

                    self.step = step + 1
                    self.elapsed = elapsed0 + (time.perf_counter() - run_start)
                    checkpoint_now = self.step % t.checkpoint_every == 0 or self.step == total
                    # what every rank does together, before anything below can raise:
                    # the logged values averaged over ranks, the ranks' RNG states
                    values = self._read_values(sums, counts) if logging_now else None
                    if checkpoint_now:
                        self._gather_rng()
                    found: DivergenceError | None = None
                    try:
                        if values is not None:
                            now = time.perf_counter()
                            self.check_finite(values)  # values are read back here anyway
                            dt = max(now - interval_start, 1e-9)
                            seen = batches_before(self.critic, self.step) - batches_before(
                                self.critic, interval_step
                            )
                            values["perf/img_per_s"] = seen * batch / dt
                            values["perf/steps_per_s"] = (self.step - interval_step) / dt
                            values["perf/kimg"] = self.kimg
                            values["lr/g"] = b.opt_g.param_groups[0]["lr"]
                            values["lr/d"] = b.opt_d.param_groups[0]["lr"]
                            values.update(
                                {f"amp/scale_{p.lower()}": v for p, v in prec.scales().items()}
                            )
                            self.writer.scalars(values, self.step)
                            last = values
                            sums, counts = {}, {}
                            interval_start, interval_step = now, self.step
                            self._report(bar, values)
                        if bar is not None:
                            bar.update(1)
                        # pictures, hooks and checkpoints (rank 0) read the models through
                        # eval_generator() / state(), which run the same guard
                        if dist.is_main:
                            if self.step % t.image_every == 0 or self.step == total:
                                self.write_picture()
                            for hook in self.hooks:
                                self._record(hook.after_step(self))
                            if checkpoint_now:
                                self.save_checkpoint()
                    except DivergenceError as e:
                        found = e
                    # a stop signal or a divergence on any rank stops every rank
                    signum, diverged = distributed.agree(
                        [STOP.signum or 0, found is not None], dist
                    )
                    self._stop_agreed = bool(signum)
                    if diverged:
                        raise found or DivergenceError(self.step, ["values found by another rank"])
                    if signum:
                        self._stop(signum, checkpointed=checkpoint_now)
                        break
                except DivergenceError as e:
                    self._roll_back(e, signalled=self._stop_agreed)  # or raise
                    stream.close()
                    stream = self._stream()  # the data the checkpoint's step sees
                    sums, counts = {}, {}
                    interval_start, interval_step = time.perf_counter(), self.step
                    if bar is not None:
                        bar.n = self.step
                        bar.refresh()
        for hook in self.hooks:
            self._record(hook.at_end(self))
        self.writer.flush()
        self.writer.close()
        if self.stopped_by is None:
            log.info(
                "done: %d steps in %.0f s; samples in %s",
                self.step,
                self.elapsed,
                self.run_dir / "samples",
            )
        return {**last, **self.metrics}

    @contextlib.contextmanager
    def _closing(self, bar):
        """Closes the progress bar; on an error (a divergence, an interrupt) also the
        event writer, so what was logged up to it is on disk."""
        redirect = contextlib.nullcontext()
        if bar is not None:  # log lines printed above the bar, never glued to a copy of it
            from tqdm.contrib.logging import logging_redirect_tqdm

            redirect = logging_redirect_tqdm()
        try:
            with redirect:
                yield
        except BaseException:
            self.writer.close()
            raise
        finally:
            if bar is not None:
                bar.close()

    @contextlib.contextmanager
    def _handlers(self, installed_here: bool):
        """Removes the stop-signal handlers when this run installed them (an
        in-process caller without the CLI's); the CLI's stay until the command ends."""
        try:
            STOP.raise_if_pending()  # a signal during start-up: nothing trained
            yield
        finally:
            if installed_here:
                STOP.uninstall()
                STOP.reset()

    def _stream(self):
        """Real batches from the one D sees first at generator step ``self.step``: under
        torchrun this rank's slice of the global batch (trainer.batch_size is global)."""
        stream = distributed.shard(
            self.b.data.batches(
                int(self.t.batch_size),
                int(self.cfg.seed),
                start=batches_before(self.critic, self.step),
                device=self.device,
                num_workers=int(self.t.num_workers),
            ),
            self.dist,
        )
        if self.t.channels_last:
            stream = ((channels_last_batch(x), c) for x, c in stream)
        return stream

    def _stop(self, signum: int, checkpointed: bool) -> None:
        """A stop signal (on any rank): one checkpoint of this step, then the loop ends."""
        self.stopped_by = STOP.signum or signum
        log.warning(
            "%s: checkpointing at step %d and stopping", signal_name(self.stopped_by), self.step
        )
        if checkpointed:
            return
        self._gather_rng()
        found = None
        try:
            if self.dist.is_main:
                self.save_checkpoint()
        except DivergenceError as e:
            found = e
        if distributed.agree([found is not None], self.dist)[0]:
            raise found or DivergenceError(self.step, ["values found by another rank"])

    def _roll_back(self, e: DivergenceError, signalled: bool = False) -> None:
        """trainer.on_nan: raise ``e`` as the run's one-line error, or reload the last
        good step checkpoint in place (as a resume does; ganrun.training.guard picks it)
        and lower both learning rates by trainer.rollback_lr_factor from then on."""
        path, state = distributed.rank0_decides(
            lambda: rollback_target(self.run_dir, e, self.t, self.guard, signalled), self.dist
        )
        rollbacks, factor = self.guard.rollbacks, self.guard.lr_factor
        self.load_state(state, path)
        self.guard.rollbacks = rollbacks + 1
        self.guard.lr_factor = factor * float(self.t.rollback_lr_factor)
        log.warning(
            "non-finite %s at step %d: rolled back to step %d (%s); learning rates x%g "
            "(rollback %d of %d)",
            ", ".join(e.what),
            e.step,
            self.step,
            path,
            self.guard.lr_factor,
            self.guard.rollbacks,
            int(self.t.max_rollbacks),
        )
        self.writer.rewind(self.step + 1)  # hide the abandoned steps (after this one)
        self.writer.scalars(
            {"guard/rollbacks": self.guard.rollbacks, "guard/lr_factor": self.guard.lr_factor},
            self.step,
        )

    def _record(self, values: dict[str, float] | None) -> None:
        if values:
            self.writer.scalars(values, self.step)
            self.metrics.update(values)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _accumulate(sums, counts, stats, ok=None, skipped_key=None):
        """Add a phase's stats to the interval's sums. ``ok`` (fp16: whether the scaler
        took the step, a 0-d tensor): a skipped step's values, possibly inf/NaN, are
        left out (no sync), and ``skipped_key`` counts the skipped fraction."""
        if ok is not None:
            stats = {k: torch.where(ok, v.detach(), 0.0) for k, v in stats.items()}
            stats[skipped_key] = (~ok).float()
        for k, v in stats.items():
            v = v.detach()
            n = ok.float() if ok is not None and k != skipped_key else 1
            sums[k] = sums[k] + v if k in sums else v.clone()
            counts[k] = counts[k] + n if k in counts else n

    def _read_values(self, sums, counts) -> dict[str, float]:
        """The interval's averages as floats: one read-back (and, under torchrun, one
        all-reduce: the mean over every rank's steps). A value no step counted (fp16:
        every step of the interval skipped) is left out."""
        keys = list(sums)  # insertion order: the same on every rank (the same code ran)
        if not keys:
            return {}
        device = sums[keys[0]].device
        packed = torch.stack(
            [sums[k].float().reshape(()).to(device) for k in keys]
            + [torch.as_tensor(counts[k], dtype=torch.float32, device=device) for k in keys]
        )
        packed = distributed.sum_values(packed, self.dist).tolist()
        n = len(keys)
        return {k: packed[i] / packed[n + i] for i, k in enumerate(keys) if packed[n + i] > 0}

    def _progress(self, total):
        if not self.t.progress or not self.dist.is_main:
            return None
        from tqdm import tqdm

        interactive = sys.stderr.isatty()
        return tqdm(
            total=total,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            mininterval=0.5 if interactive else 30.0,
            smoothing=0.05,
            leave=True,
        )

    def _report(self, bar, values):
        short = {
            "D": values.get("loss/d"),
            "G": values.get("loss/g"),
            "D(x)": values.get("D/real"),
            "D(G(z))": values.get("D/fake"),
            "img/s": values.get("perf/img_per_s"),
        }
        text = " ".join(f"{k}={v:.3g}" for k, v in short.items() if v is not None)
        if bar is not None:  # the bar shows it; train.log still keeps the history
            bar.set_postfix_str(text, refresh=False)
            to_log_files(
                logging.INFO, "step %d/%d %s", self.step, int(self.t.steps), text, logger=log.name
            )
        else:
            log.info("step %d/%d %s", self.step, int(self.t.steps), text)

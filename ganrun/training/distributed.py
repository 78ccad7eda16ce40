"""Data-parallel training under torchrun: ``torchrun --nproc_per_node=N -m ganrun train ...``.

Every rank runs the same ``ganrun train`` process (torchrun's environment: RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; multi-node with torchrun's usual rendezvous,
e.g. under ``srun``). Decisions, in the order a run meets them:

* **Before Hydra** (``rank0_preflight``, called by the CLI): the process group is
  initialized (backend ``cpu:gloo,cuda:nccl`` on a machine with CUDA, else ``gloo``),
  rank 0 runs the preflight alone (one error line, not N; its exit status goes to
  every rank) and resolves the run dir (Hydra would otherwise make one time-stamped
  dir per process), which every rank then gets as ``hydra.run.dir``; ranks > 0 also get
  ``hydra.output_subdir=null`` and ``hydra/job_logging=none`` so that only rank 0 writes
  ``.hydra/`` and ``train.log``.
* **Claiming the run dir** (``ganrun.commands.train``): rank 0 takes the lock, decides
  between resume, auto-resume and a fresh start, writes status.json, and broadcasts
  the config and checkpoint state (``rank0_decides``); the other ranks never touch the
  run dir, so on several nodes only rank 0's node needs it.
* **Batch size**: ``trainer.batch_size`` is the *global* batch (the paper's number, the
  one ``kimg``, EMA half-lives and img/s count); each rank trains on
  ``batch_size / world_size`` (refused unless it divides). Rank r's real batch is slice
  r of the global batch a one-process run would draw at that step (``shard``), so the
  data stream does not depend on the number of ranks.
* **Randomness**: all ranks build the networks from ``seed`` (then rank 0's weights are
  broadcast anyway); for training, rank 0 keeps the RNG of a one-process run and rank
  r > 0 is reseeded with ``rank_seed(seed, r)``, so every rank draws its own z (and GP
  interpolation coefficients, labels, augmentations). Every rank's RNG state goes into
  the checkpoint (``rng_ranks``), so a resume with the same number of ranks is exact.
* **Gradients**: averaged over ranks by one all-reduce per optimizer step
  (``average_gradients``), after ``backward()`` and before ``step()`` — not
  DistributedDataParallel, whose hooks assume one forward per backward, do not work
  with ``torch.autograd.grad`` (gradient penalties, R1, consensus: double backward),
  and would need ``find_unused_parameters`` while D is frozen in G's step; a GAN step
  calls D two to four times. This is what stylegan2-ada-pytorch does
  (``training/loss.py``/``training_loop.py``: all-reduce of the flattened gradients).
* **Per step**: one small all-reduce of flags on the CPU (gloo: no host-device sync on
  CUDA) agrees on a stop signal seen by any rank and on a divergence found by any rank;
  on log steps the logged values are averaged over ranks first, so the guard decides
  the same everywhere. Only rank 0 logs, draws, evaluates and checkpoints.
"""

from __future__ import annotations

import atexit
import datetime
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as tdist

from ganrun.errors import ConfigError, GanrunError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Collectives wait this long for the slowest rank: rank 0 may be evaluating
# (FID of 50k samples) while the others wait at the next step.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """The rank and world size torchrun put into the environment (1 process without)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return Dist()
    return Dist(rank, world, local) if world > 1 else Dist()


def current() -> Dist:
    """This process's place: from the initialized process group, else from the
    environment (before ``init``), else a single process."""
    if tdist.is_available() and tdist.is_initialized():
        return Dist(tdist.get_rank(), tdist.get_world_size(), from_env().local_rank)
    return from_env()


def is_main() -> bool:
    return current().is_main


def init() -> Dist:
    """Initialize the default process group from torchrun's environment (idempotent);
    a single process without torchrun is left alone."""
    d = from_env()
    if not d.enabled or tdist.is_initialized():
        return current()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(d.local_rank % max(1, torch.cuda.device_count()))
    # torch.distributed.nn.functional binds `group=group.WORLD` as its functions' default
    # at import; imported after the group exists (torch._dynamo pulls it in lazily, e.g.
    # at the first optimizer step), it holds the default group past destroy_process_group,
    # so gloo's worker threads outlive shutdown() and one that drops its last tensor while
    # the interpreter finalizes aborts the process (SIGABRT, "terminate called without an
    # active exception"; about 1 run in 15 on 2 ranks). Imported first, it binds None.
    importlib.import_module("torch.distributed.nn.functional")
    tdist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)
    # gloo's threads must be joined before the interpreter exits (else: "terminate called
    # without an active exception", SIGABRT), however the command ends
    atexit.register(shutdown)
    if not d.is_main:  # only rank 0 logs; warnings and errors still show
        logging.getLogger("ganrun").setLevel(logging.WARNING)
    return current()


def shutdown() -> None:
    """Destroy the process group. Launched without torchrun's agent (plain env://, e.g.
    srun), rank 0 hosts the rendezvous store: it waits (10 s at most) until the other
    ranks have closed theirs, since a rank whose store vanishes while it closes aborts
    ("terminate called without an active exception")."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return
    d = current()
    try:
        store = tdist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - no store to coordinate through
        store = None
    tdist.destroy_process_group()
    if store is None or not d.enabled:
        return
    try:
        if d.is_main:
            keys = [f"ganrun/closed/{r}" for r in range(1, d.world)]
            store.wait(keys, datetime.timedelta(seconds=10))
        else:
            store.set(f"ganrun/closed/{d.rank}", "1")
    except Exception:  # noqa: BLE001 - a rank that is gone already
        pass


def rank_seed(seed: int, rank: int) -> int:
    """The torch/numpy/python seed of rank ``rank``: ``seed`` itself on rank 0 (so a
    one-rank run is an ordinary run), a mix of (seed, rank) on the others."""
    if rank == 0:
        return int(seed)
    from ganrun.data.base import _mix

    return _mix(int(seed), int(rank), 0xD157) % 2**31


def local_device(name: str, d: Dist) -> str:
    """``trainer.device`` for this rank: auto/cuda become cuda:<local rank>."""
    if not d.enabled:
        return name
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{d.local_rank % torch.cuda.device_count()}"
    return name


def check(cfg, d: Dist | None = None) -> None:
    """ConfigError (one line) for trainer settings this world size cannot run."""
    d = d or current()
    t = cfg.trainer
    if not d.enabled:
        return  # one process: sync_batchnorm has nothing to synchronize with (plain BatchNorm)
    if int(t.batch_size) % d.world:
        raise ConfigError(
            f"trainer.batch_size={t.batch_size} is the global batch and must divide by the "
            f"{d.world} ranks; use a multiple of {d.world}, e.g. "
            f"trainer.batch_size={max(1, int(t.batch_size) // d.world) * d.world}"
        )
    if t.sync_batchnorm:
        from ganrun.build import resolve_device

        device = resolve_device(str(t.device))
        if device.type != "cuda":
            raise ConfigError(
                "trainer.sync_batchnorm=true needs CUDA (torch's SyncBatchNorm runs on GPUs "
                "only); drop it to train on the CPU with per-rank BatchNorm statistics"
            )
        second = second_order_terms(cfg)
        if second:
            raise ConfigError(
                f"trainer.sync_batchnorm=true cannot be combined with regularizer={second[0]}: "
                "its double backward would run through SyncBatchNorm's backward, which is not "
                "twice differentiable; drop one of them"
            )


def second_order_terms(cfg) -> list[str]:
    """The chosen regularizers that take a second derivative, as their classes declare
    (``Regularizer.first_order``), read from each node's ``_target_`` before building."""
    from hydra.utils import get_class

    out = []
    for name, node in (cfg.get("regularizer") or {}).items():
        target = node.get("_target_") if node is not None else None
        try:
            cls = get_class(target) if isinstance(target, str) else None
        except Exception:
            cls = None  # build.validate names a bad _target_ itself
        if cls is not None and not getattr(cls, "first_order", False):
            out.append(str(name))
    return out


# --------------------------------------------------------------------------- before Hydra
def rank0_preflight(preflight: Callable[[], list[str]], args: Sequence[str]) -> list[str]:
    """The CLI's preflight for ``ganrun train`` under torchrun: see the module docstring.
    Without torchrun it is just ``preflight()``."""
    d = init()
    if not d.enabled:
        return preflight()
    if d.is_main:
        try:
            if any(a in ("-m", "--multirun") for a in args):
                print(
                    "ganrun: error: -m (a sweep) cannot run under torchrun: launch one "
                    "torchrun per job, or sweep without torchrun",
                    file=sys.stderr,
                    flush=True,
                )
                raise SystemExit(2)
            final = preflight()
            final = [*final, f"hydra.run.dir={_quote(_resolved_run_dir(final))}"]
        except SystemExit as e:
            _broadcast(("exit", e.code if isinstance(e.code, int) else 1))
            raise
        except BaseException:
            _broadcast(("exit", 1))
            raise
        _broadcast(("ok", final))
        return final
    kind, value = _broadcast(None)
    if kind == "exit":
        raise SystemExit(value)
    return [*value, "hydra.output_subdir=null", "hydra/job_logging=none"]


def _resolved_run_dir(args: list[str]) -> str:
    """Hydra's run dir for ``args``, resolved once (``${now:...}`` on rank 0's clock)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ganrun.paths import conf_dir

    overrides = [a for a in args if not a.startswith("-")]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    return os.path.abspath(str(OmegaConf.select(cfg, "hydra.run.dir")))


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _broadcast(obj: Any) -> Any:
    box = [obj]
    tdist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    return box[0]


# --------------------------------------------------------------------------- decisions
def rank0_decides(fn: Callable[[], T], d: Dist | None = None) -> T:
    """``fn()`` on rank 0, its result on every rank; a GanrunError raised by it is
    raised on every rank (same class and message; ranks > 0 stay quiet about it).
    Any other exception on rank 0 makes the other ranks exit with status 1."""
    d = d or current()
    if not d.enabled:
        return fn()
    if not d.is_main:
        return receive()
    sender = Sender(d)
    try:
        result = fn()
    except BaseException as e:
        sender.fail(e)
        raise
    sender.send(result)
    return result


class Sender:
    """Rank 0's side of a decision the other ranks wait for: ``send(result)`` once, or
    ``fail(exception)`` (``fail_unless_sent`` in a ``finally``: whatever went wrong
    before ``send``); a no-op without torchrun."""

    def __init__(self, d: Dist | None = None):
        self.d = d or current()
        self.sent = not (self.d.enabled and self.d.is_main)

    def send(self, result: Any) -> None:
        if not self.sent:
            self.sent = True
            _broadcast(("ok", result))

    def fail(self, e: BaseException | None) -> None:
        if self.sent:
            return
        self.sent = True
        if isinstance(e, GanrunError):
            _broadcast(("error", type(e).__module__, type(e).__qualname__, _error_args(e)))
        else:
            name = type(e).__name__ if e is not None else "an early return"
            _broadcast(("crash", name, str(e)[:300]))

    def fail_unless_sent(self, e: BaseException | None) -> None:
        self.fail(e)


def receive() -> Any:
    """Ranks > 0: rank 0's result (``Sender.send``), or its error raised here."""
    message = _broadcast(None)
    if message[0] == "ok":
        return message[1]
    if message[0] == "error":
        raise _rebuild_error(*message[1:])
    raise SystemExit(1)  # rank 0 crashed: its traceback is on its stderr


def _error_args(e: GanrunError) -> tuple:
    from ganrun.errors import DivergenceError

    if isinstance(e, DivergenceError):
        return ("divergence", e.step, list(e.what), e.detail)
    return ("message", str(e))


def _rebuild_error(module: str, qualname: str, args: tuple) -> GanrunError:
    import importlib

    from ganrun.errors import DivergenceError

    if args[0] == "divergence":
        return DivergenceError(*args[1:])
    try:
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, GanrunError)):
            raise TypeError
        err = cls.__new__(cls)
        Exception.__init__(err, args[1])
        return err
    except Exception:
        return GanrunError(args[1])


def agree(flags: Sequence[int], d: Dist | None = None) -> list[int]:
    """The element-wise maximum of small non-negative integers over all ranks (CPU,
    gloo: no host-device sync): a stop signal or a divergence seen by any rank."""
    d = d or current()
    if not d.enabled:
        return [int(f) for f in flags]
    t = torch.tensor([int(f) for f in flags], dtype=torch.int64)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


def barrier(d: Dist | None = None) -> None:
    """Wait for every rank (a CPU all-reduce: works the same under gloo and nccl)."""
    agree([0], d)


# --------------------------------------------------------------------------- tensors
def average_gradients(params: Iterable[torch.Tensor], d: Dist | None = None) -> None:
    """Average ``.grad`` over all ranks: one all-reduce of the flattened gradients per
    dtype and device. Every rank's step must reach the same parameters (it does:
    every rank runs the same code on the same kinds of batches)."""
    d = d or current()
    if not d.enabled:
        return
    groups: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        tdist.all_reduce(flat)
        flat.div_(d.world)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n


def mean_values(values: torch.Tensor, d: Dist | None = None) -> torch.Tensor:
    """The mean of a 1-D tensor of logged values over all ranks (in place)."""
    d = d or current()
    if d.enabled:
        tdist.all_reduce(values)
        values.div_(d.world)
    return values


def sum_values(values: torch.Tensor, d: Dist | None = None) -> torch.Tensor:
    d = d or current()
    if d.enabled:
        tdist.all_reduce(values)
    return values


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, d: Dist | None = None) -> None:
    """Rank 0's parameters and buffers on every rank."""
    d = d or current()
    if not d.enabled:
        return
    for t in [*module.parameters(), *module.buffers()]:
        tdist.broadcast(t.data, src=0)


def gather_objects(obj: Any, d: Dist | None = None) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank (RNG states)."""
    d = d or current()
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world
    tdist.all_gather_object(out, obj)
    return out


def quiet_loggers(cfg) -> None:
    """Ranks > 0 write no event files, CSVs or wandb runs: every ``logger.*`` switch off."""
    for key, value in list(cfg.logger.items()):
        if isinstance(value, bool):
            cfg.logger[key] = False


def shard(stream: Iterator, d: Dist) -> Iterator:
    """Rank ``d.rank``'s slice of each global batch of ``stream`` (images/points and
    labels alike)."""
    if not d.enabled:
        yield from stream
        return
    for x, c in stream:
        n = x.shape[0] // d.world
        lo, hi = d.rank * n, (d.rank + 1) * n
        yield x[lo:hi], (c[lo:hi] if c is not None else None)


def convert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm layers of ``module`` as SyncBatchNorm (statistics over the global
    batch); the parameters and buffers are the same tensors, so optimizers built
    before the conversion keep working."""
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)


def reseed(seed: int) -> None:
    """Python's, NumPy's and torch's global generators from ``seed``."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class RanksOutOfSync(RuntimeError):
    """The ranks' weights differ: a bug in ganrun (or a rank fed other data), never bad
    input; the run stops on every rank rather than train on."""


@torch.no_grad()
def check_in_sync(modules: dict[str, torch.nn.Module], d: Dist | None = None) -> None:
    """Every rank holds bit-identical parameters of ``modules`` (the element-wise max and
    min over ranks agree), checked at every checkpoint step, as stylegan2-ada-pytorch
    checks its networks at each snapshot. BatchNorm running statistics are per rank
    without trainer.sync_batchnorm, so buffers are not compared. Raises RanksOutOfSync
    on every rank (the verdict is the same everywhere)."""
    d = d or current()
    if not d.enabled:
        return
    for name, module in modules.items():
        params = [p.detach().reshape(-1).float() for p in module.parameters()]
        if not params:
            continue
        flat = torch.nan_to_num(torch.cat(params), nan=0.0)  # NaN: the guard's business
        high, low = flat.clone(), flat.clone()
        tdist.all_reduce(high, op=tdist.ReduceOp.MAX)
        tdist.all_reduce(low, op=tdist.ReduceOp.MIN)
        differ = int(torch.count_nonzero(high != low))
        if differ:
            raise RanksOutOfSync(
                f"the ranks' {name} weights differ in {differ} of {flat.numel()} values: "
                "gradients were not averaged alike on every rank (a bug; please report it)"
            )

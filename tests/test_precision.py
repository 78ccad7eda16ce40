"""trainer.precision (fp32 | bf16 | fp16), channels_last and compile: ganrun/training/precision.py."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from ganrun import build
from ganrun import checkpoint as ckpt
from ganrun.errors import DivergenceError
from ganrun.objective import Objective, Regularizer
from ganrun.training.loop import Trainer
from ganrun.training.precision import (
    MIN_LOSS_SCALE,
    Precision,
    check,
    check_compile,
    penalty_grad,
)
from tests.conftest import (
    TINY_MODEL,
    assert_resume_is_exact,
    cli_error,
    compose_config,
    run_train,
    tiny_overrides,
)

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- penalty_grad
def test_penalty_grad_is_autograd_grad_without_a_scaler():
    x = torch.randn(5, 3, requires_grad=True)
    (g,) = penalty_grad((x**3).sum(), x)
    assert torch.allclose(g, 3 * x.detach() ** 2)
    assert g.requires_grad  # create_graph: a second backward sees it


def test_penalty_grad_scales_so_small_fp16_gradients_do_not_underflow():
    """The AMP docs' gradient-penalty recipe: a gradient of 1e-8 * W underflows to 0
    in fp16; differentiated through the scaled output and unscaled, it is 1e-8 * W."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 1)
    x = torch.randn(3, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.float16):
        (plain,) = torch.autograd.grad((lin(x) * 1e-8).sum(), x)
    prec = Precision("fp16", CPU)
    prec.scalers["D"] = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    with prec.phase("D"):
        (scaled,) = penalty_grad((lin(x) * 1e-8).sum(), x)
    expected = (lin.weight.detach() * 1e-8).expand(3, 4)
    assert torch.count_nonzero(plain) == 0  # what the plain call loses
    # to fp16's precision at the scaled magnitude (the smallest entry is 1e-2 of the largest)
    assert torch.allclose(scaled, expected, rtol=0, atol=1e-2 * float(expected.abs().max()))
    # G's phase reads G's scaler (each optimizer its own), here torch's default 2^16,
    # which fp16 cannot hold: an overflow, which GradScaler.step would skip
    with prec.phase("G"):
        (g_scaled,) = penalty_grad((lin(x) * 1e-8).sum(), x)
    assert torch.isinf(g_scaled).all()


# --------------------------------------------------------------------------- bf16 vs fp32
# (model, regularizer, phase): every term that reads D's outputs, features or gradients.
# Each value under bf16 autocast is compared with fp32 on the same batch, weights and
# random draws. bf16 keeps 8 bits of mantissa (2^-9 = 0.2 % relative rounding per op);
# measured on these tiny nets, every term is within 0.35 % of fp32 (ortho: exact, it is
# computed with autocast off) except dcgan's consensus term, 1.3 % at its 32 px (0.13 %
# at 28 px: the squared norm of every gradient, through one more layer on each side);
# asserted: 1 %, consensus 2 %. The losses are compared to 5 % of the size
# of D's outputs: a WGAN loss is a difference of two near-equal means, so its relative
# error is large (23 % here) while its absolute error is that of the outputs (2.6 %).
# (model, regularizers, tolerance per term); one run of each phase per precision
REGULARIZER_CASES = [
    ("wgan_gp", [], {"gp": 0.01}),
    (
        "dcgan",
        ["regularizer=[r1,consensus,feature_matching,ortho,label_smoothing]"],
        {
            "r1": 0.01,
            "consensus": 0.02,
            "feature_matching": 0.01,
            "ortho": 1e-6,
            "label_smoothing": 0.01,
        },
    ),  # fmt: skip
    ("infogan", ["regularizer=info"], {"info": 0.01}),
]


def _phase_values(b, phase: str, mode: str, seed: int = 3) -> dict[str, float]:
    prec = Precision(mode, CPU)
    real, real_c = next(b.data.batches(16, 0, device=CPU))
    G, D = copy.deepcopy(b.G), copy.deepcopy(b.D)
    torch.manual_seed(seed)
    with prec.phase(phase.upper()):
        if phase == "d":
            loss, stats = b.objective.d_loss(G, D, real, real_c, 0)
        else:
            D.requires_grad_(False)
            loss, stats = b.objective.g_loss(G, D, real, real_c, 0)
    # the loss and every term computed in fp32 from the low-precision network outputs
    assert loss.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in stats.values()), stats
    return {k: float(v) for k, v in stats.items()}


@pytest.mark.parametrize(("model", "extra", "terms"), REGULARIZER_CASES, ids=lambda v: str(v)[:20])
def test_each_regularizer_under_bf16_matches_fp32(model, extra, terms):
    cfg = compose_config(tiny_overrides(model, "mnist_embedded", "logger=none", *extra))
    torch.manual_seed(0)
    b = build.build(cfg)
    seen = set()
    for phase in ("d", "g"):
        fp32 = _phase_values(b, phase, "fp32")
        bf16 = _phase_values(b, phase, "bf16")
        assert bf16 != fp32  # autocast did run in bf16
        for name, rtol in terms.items():
            key = f"reg/{name}"
            if key in fp32:
                seen.add(name)
                assert fp32[key] != 0
                assert bf16[key] == pytest.approx(fp32[key], rel=rtol), (key, fp32[key], bf16[key])
        loss = f"loss/{phase}"
        scale = abs(fp32.get("D/real", 1.0)) + abs(fp32.get("D/fake", 1.0))
        assert abs(bf16[loss] - fp32[loss]) <= 0.05 * scale, (loss, fp32, bf16)
    assert seen == set(terms)


# --------------------------------------------------------------------------- fp16
def _trainer(tmp_path, *extra, model="dcgan", dataset="mnist_embedded"):
    cfg = compose_config(tiny_overrides(model, dataset, "logger=none", *extra))
    torch.manual_seed(int(cfg.seed))
    return Trainer(cfg, tmp_path, build.build(cfg))


@pytest.mark.parametrize("model", ["wgan_gp", pytest.param("dcgan", marks=pytest.mark.slow)])
def test_fp16_with_scalers_trains_a_few_steps_with_finite_losses(tmp_path, model):
    _, result = run_train(
        tmp_path,
        tiny_overrides(model, "mnist_embedded", "trainer.precision=fp16", "trainer.steps=4"),
    )
    assert all(math.isfinite(v) for v in result.values() if isinstance(v, float))
    state = ckpt.load(tmp_path)[1]
    assert set(state["precision"]) == {"D", "G"}  # the scalers' state is checkpointed
    assert state["precision"]["D"]["scale"] > 0
    for net in state["models"].values():
        assert all(torch.isfinite(v).all() for v in net.values() if v.is_floating_point())


def test_skipped_fp16_steps_do_not_trip_the_guard(tmp_path):
    """D's scale starts at 2^40: every D step overflows and GradScaler skips it (D's
    weights stay as built), which is no divergence; G trains as usual."""
    trainer = _trainer(tmp_path, "trainer.precision=fp16", "trainer.on_nan=stop")
    trainer.precision.scalers["D"] = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    d_before = copy.deepcopy(trainer.b.D.state_dict())
    g_before = copy.deepcopy(trainer.b.G.state_dict())
    values = trainer.run()  # log_every=1: the guard reads every step
    assert trainer.step == 3
    assert values["amp/skipped_d"] == 1.0 and values["amp/skipped_g"] == 0.0
    assert "loss/d" not in values  # a skipped step's inf/NaN values are not averaged in
    assert all(math.isfinite(v) for v in values.values())
    for k, v in trainer.b.D.state_dict().items():
        if v.is_floating_point() and "running" not in k:
            assert torch.equal(v, d_before[k]), k
    assert any(not torch.equal(v, g_before[k]) for k, v in trainer.b.G.state_dict().items())
    assert values["amp/scale_d"] == 2.0**37  # halved once per skipped step


def test_an_fp16_scale_below_one_is_a_divergence(tmp_path):
    """A run whose gradients overflow even unscaled never applies them; the guard
    stops it through its loss scale instead."""
    trainer = _trainer(tmp_path, "trainer.precision=fp16", "trainer.on_nan=stop")
    trainer.precision.scalers["G"] = torch.amp.GradScaler("cpu", init_scale=MIN_LOSS_SCALE / 4)
    with pytest.raises(DivergenceError, match="G loss scale"):
        trainer.run()


@pytest.mark.slow
def test_fp16_scaler_state_survives_a_resume(tmp_path):
    base = tiny_overrides("dcgan", "mnist_embedded", "trainer.precision=fp16", "logger=none")
    run_train(tmp_path, [*base, "trainer.steps=2"])
    saved = ckpt.load(tmp_path)[1]["precision"]
    trainer = _trainer(tmp_path / "other", "trainer.precision=fp16")
    trainer.load_state(ckpt.load(tmp_path)[1], tmp_path)
    assert trainer.precision.scalers["D"].get_scale() == saved["D"]["scale"]
    assert trainer.precision.scalers["G"].state_dict() == saved["G"]


# --------------------------------------------------------------------------- exact resume
@pytest.mark.parametrize(
    "extra",
    [
        ["trainer.precision=bf16"],
        pytest.param(
            ["trainer.precision=bf16", "trainer.channels_last=true"], marks=pytest.mark.slow
        ),
    ],
    ids=["bf16", "bf16-channels_last"],
)
def test_resume_is_exact_under_bf16(tmp_path, extra):
    assert_resume_is_exact(
        tmp_path, tiny_overrides("dcgan", "mnist_embedded", "logger=none", *extra), 4, 2
    )


@pytest.mark.slow
def test_resume_is_exact_under_fp16_with_a_penalty(tmp_path):
    overrides = tiny_overrides("wgan_gp", "mnist_embedded", "logger=none", "trainer.precision=fp16")
    assert_resume_is_exact(tmp_path, overrides, 4, 2)


# --------------------------------------------------------------------------- channels_last
def test_channels_last_converts_images_and_leaves_points_alone(tmp_path):
    trainer = _trainer(tmp_path / "img", "trainer.channels_last=true", "trainer.steps=1")
    conv = next(p for p in trainer.b.D.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    real, _ = next(trainer._stream())
    assert real.is_contiguous(memory_format=torch.channels_last) and real.dim() == 4
    assert math.isfinite(trainer.run()["loss/d"])
    points = _trainer(
        tmp_path / "ring", "trainer.channels_last=true", model="vanilla", dataset="ring"
    )
    x, _ = next(points._stream())
    assert x.dim() == 2 and all(p.is_contiguous() for p in points.b.D.parameters())


# --------------------------------------------------------------------------- compile
class _Compiled(torch.nn.Module):
    """Stands in for torch.compile's OptimizedModule (which keeps ``_orig_mod``)."""

    def __init__(self, net):
        super().__init__()
        self._orig_mod = net


def test_phases_with_a_second_order_term_use_the_uncompiled_networks():
    """GP is second-order and a D term: D's phase runs eager, G's stays compiled;
    ortho is first-order: compiled in G's phase."""
    cfg = compose_config(tiny_overrides("dcgan", "mnist_embedded", "regularizer=[gp,ortho]"))
    active = build.build_objective(cfg, 0)._active(0)
    G, D = _Compiled(torch.nn.Linear(1, 1)), _Compiled(torch.nn.Linear(1, 1))
    assert Objective._networks(active, "d_term", G, D) == (G._orig_mod, D._orig_mod)
    assert Objective._networks(active, "g_term", G, D) == (G, D)
    assert Objective._networks(active[1:], "d_term", G, D) == (G, D)  # ortho alone


def test_a_new_regularizer_counts_as_second_order_until_it_says_otherwise():
    assert Regularizer.first_order is False  # the safe default under trainer.compile


def test_bad_speed_settings_are_one_line(capsys):
    err = cli_error(["train", *tiny_overrides("dcgan", "fake"), "trainer.precision=fp64"], capsys)
    assert "trainer.precision=fp64 is not valid; choose from fp32, bf16, fp16" in err
    assert "trainer.compile_mode=fast is not valid" in check_compile("fast", CPU)
    assert check("bf16", torch.device("mps")).startswith("trainer.precision=bf16 needs")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_compile_trains_and_matches_eager(tmp_path, model):
    """torch.compile'd G and D (WGAN-GP: D uncompiled on its GP steps, as double
    backward does not compile) give the eager run's losses to float tolerance."""
    base = tiny_overrides(model, "fake", "logger=none", "trainer.steps=2")
    _, eager = run_train(tmp_path / "eager", base)
    _, compiled = run_train(tmp_path / "compiled", [*base, "trainer.compile=true"])
    for k in ("loss/d", "loss/g"):
        assert compiled[k] == pytest.approx(eager[k], rel=1e-3, abs=1e-4)


@pytest.mark.slow
def test_bench_throughput_measures_variants_side_by_side(tmp_path):
    """scripts/bench_throughput.py: each variant for ganrun and the hand-written loop,
    each measurement in its own process with its peak memory."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_throughput.py"
    out = tmp_path / "tp.json"
    r = subprocess.run(
        [sys.executable, str(script), "--steps", "1", "--repeats", "1", "--compare-reference",
         "--variants", "fp32,bf16+channels_last", "--json", str(out), "model.width=4",
         "trainer.batch_size=4"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    median = result["variants"]["median"]
    assert set(median) == {"fp32", "bf16+channels_last"}
    for per in median.values():
        for kind in ("ganrun", "reference"):
            assert per[kind]["img_per_s"] > 0 and per[kind]["peak_mib"] >= 0
    assert "bf16+channels_last" in r.stdout and "ratio" in r.stdout


# --------------------------------------------------------------------------- every model
@pytest.mark.parametrize("model", sorted(TINY_MODEL))
def test_every_model_trains_under_bf16(tmp_path, model):
    """Each network's forward and backward under autocast (a buffer updated from a
    bf16 activation once broke StyleGAN's training mode here)."""
    dataset = "ring" if model in ("pacgan_mlp", "unrolled") else "mnist_embedded"
    _, values = run_train(
        tmp_path,
        tiny_overrides(model, dataset, "logger=none", "trainer.precision=bf16", "trainer.steps=1"),
    )
    assert {"loss/d", "loss/g"} <= set(values)
    assert all(math.isfinite(v) for v in values.values() if isinstance(v, float))

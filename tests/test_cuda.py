"""The CUDA paths (issue 19): training under each precision, channels_last, exact
resume with trainer.deterministic, compile, and a CUDA checkpoint read back on the
CPU. Skipped on a machine without a GPU (the project's own CI has none);
scripts/bench_gpu.sh runs them on a GPU machine. GANRUN_TEST_DEVICE=cpu runs the same
bodies on the CPU, to check the tests themselves where no GPU is lent."""

from __future__ import annotations

import math
import os

import pytest
import torch

from ganrun import checkpoint as ckpt
from tests.conftest import assert_resume_is_exact, run_train, tiny_overrides

DEVICE = os.environ.get("GANRUN_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device visible"
)


def on_device(model: str, *extra: str, dataset: str = "fake") -> list[str]:
    base = tiny_overrides(model, dataset, "logger=none", *extra)
    return [o for o in base if not o.startswith("trainer.device=")] + [f"trainer.device={DEVICE}"]


def _finite_state(run_dir) -> dict:
    state = ckpt.load(run_dir)[1]  # map_location cpu: a CUDA checkpoint reads on any machine
    for part, net in state["models"].items():
        for k, v in net.items():
            assert v.device.type == "cpu", f"{part}.{k}"
            if v.is_floating_point():
                assert torch.isfinite(v).all(), f"{part}.{k}"
    return state


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("model", ["dcgan", "wgan_gp", "stylegan"])
def test_trains_under_each_precision(tmp_path, model, precision):
    """DCGAN (BatchNorm), WGAN-GP (a gradient penalty under autocast and, for fp16, a
    scaled loss) and StyleGAN (R1, style mixing) on the device."""
    _, values = run_train(
        tmp_path, on_device(model, f"trainer.precision={precision}", "trainer.steps=4")
    )
    # (fp16: a step the scaler skips is left out of the logged averages, so the
    # last step's losses may be absent; what is logged must be finite)
    assert values and all(math.isfinite(v) for v in values.values() if isinstance(v, float))
    if precision != "fp16":
        assert {"loss/d", "loss/g"} <= set(values)
    state = _finite_state(tmp_path)
    if precision == "fp16":
        assert set(state["precision"]) == {"D", "G"}
        assert all(s["scale"] > 0 for s in state["precision"].values())


def test_bf16_with_channels_last_trains(tmp_path):
    _, values = run_train(
        tmp_path,
        on_device("dcgan", "trainer.precision=bf16", "trainer.channels_last=true"),
    )
    assert math.isfinite(values["loss/d"]) and math.isfinite(values["loss/g"])
    _finite_state(tmp_path)


@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_resume_is_exact_when_deterministic(tmp_path, model):
    """trainer.deterministic=true: cuDNN and cuBLAS in their deterministic modes, so
    a resumed run ends bit-identical to a straight one on the GPU too."""
    assert_resume_is_exact(tmp_path, on_device(model, "trainer.deterministic=true"), 4, 2)


def test_trains_on_the_embedded_digits(tmp_path):
    """An in-memory dataset of real images, batches taken on the device."""
    _, values = run_train(tmp_path, on_device("dcgan", dataset="mnist_embedded"))
    assert math.isfinite(values["loss/d"])
    _finite_state(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_compile_trains_and_matches_eager(tmp_path, model):
    base = on_device(model, "trainer.steps=2")
    _, eager = run_train(tmp_path / "eager", base)
    _, compiled = run_train(tmp_path / "compiled", [*base, "trainer.compile=true"])
    for k in ("loss/d", "loss/g"):
        assert compiled[k] == pytest.approx(eager[k], rel=1e-2, abs=1e-3)

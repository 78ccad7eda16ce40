"""Discriminator rejection sampling (ganrun.rejection; Azadi et al. 2019)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from ganrun import cli
from ganrun import rejection as drs
from ganrun.data.toy import Grid
from ganrun.errors import CheckpointError, GanrunError
from ganrun.metrics import modes
from ganrun.models import vanilla
from tests.conftest import run_train, tiny_overrides


class ScaledNormal(nn.Module):
    """A "generator" whose samples are N(0, scale^2 I) in 2-D."""

    num_classes = 0

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def sample_z(self, n, *, device="cpu", generator=None, truncation=None):
        return torch.randn(n, 2, generator=generator).to(device)

    def forward(self, z, c=None):
        return self.scale * z


class AnalyticRatio(nn.Module):
    """logit(x) = log N(x; 0, I) - log N(x; 0, s^2 I): the optimal D's logit for data
    N(0, I) against the generator ScaledNormal(s)."""

    def __init__(self, s: float):
        super().__init__()
        self.s = s

    def forward(self, x):
        r2 = (x**2).sum(dim=1)
        return -r2 / 2 + r2 / (2 * self.s**2) + 2 * math.log(self.s)


def test_gamma_zero_is_exact_rejection_sampling():
    # data N(0, I), generator N(0, 4 I): p_d / p_g peaks at 4 (x = 0), so exact
    # rejection sampling keeps 1 in 4 candidates and returns N(0, I)
    settings = drs.RejectionSettings(method="drs", percentile=None, burn_in=20_000)
    G = ScaledNormal(2.0)
    sampler = drs.RejectionSampler(
        G, AnalyticRatio(2.0), settings, torch.device("cpu"), init="analytic", fit={}
    )
    assert sampler.burn_in_max == pytest.approx(math.log(4.0), abs=0.01)
    x = sampler.generate(8000, seed=3, batch_size=1000)
    assert x.shape == (8000, 2)
    # s.e. of a standard deviation from 8,000 points is ~0.008
    assert x.std(dim=0).sub(1.0).abs().max() < 0.03, x.std(dim=0)
    assert sampler.last["acceptance"] == pytest.approx(0.25, abs=0.02)
    # the same seed gives the same samples; the global RNG is left alone
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    again = sampler.generate(8000, seed=3, batch_size=1000)
    assert torch.equal(again, x) and torch.equal(torch.rand(1), before)


def test_acceptance_probability_is_eq_8_with_the_batch_percentile():
    settings = drs.RejectionSettings(method="drs", percentile=50.0, burn_in=10)
    sampler = drs.RejectionSampler(
        ScaledNormal(1.0), AnalyticRatio(1.0), settings, torch.device("cpu"), init="x", fit={}
    )
    logits = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0], dtype=torch.float64)
    d = logits - 1.0
    f = d - torch.log(1 - torch.exp(d - drs.EPS))
    expected = torch.sigmoid(f - f.median())  # the 50th percentile of 5 values: the middle one
    got = sampler.acceptance_probability(logits, 1.0)
    assert torch.allclose(got, expected, atol=1e-12)
    assert got[2] == pytest.approx(0.5) and torch.all(got.diff() > 0)  # monotone in the logit
    # equal logits: every candidate at F = gamma, accepted with probability 1/2
    flat = sampler.acceptance_probability(torch.zeros(4, dtype=torch.float64), 0.0)
    assert torch.allclose(flat, torch.full((4,), 0.5, dtype=torch.float64))


class JunkAndData(nn.Module):
    """Half of its samples from ``data``, half uniform junk over [-3, 3]^2."""

    num_classes = 0

    def __init__(self, data):
        super().__init__()
        self.data = data

    def sample_z(self, n, *, device="cpu", generator=None, truncation=None):
        x, _ = self.data.sample(n, generator)
        junk = 6 * torch.rand(n, 2, generator=generator) - 3
        pick = torch.rand(n, 1, generator=generator) < 0.5
        return torch.where(pick, x, junk)

    def forward(self, z, c=None):
        return z


def test_a_fitted_estimator_rejects_what_the_data_does_not_have():
    data = Grid(size=3, spacing=2.0, std=0.2)
    G = JunkAndData(data)
    torch.manual_seed(0)
    D = vanilla.Discriminator(
        (2,), width=64, depth=2, pieces=2, dropout_input=0.0, dropout_hidden=0.0
    )
    settings = drs.RejectionSettings(method="drs", steps=400, batch_size=256, lr=1e-2, burn_in=2000)
    fit = drs.fit_estimator(G, D, data, settings, torch.device("cpu"))
    # chance is 2 log 2 = 1.386; the Bayes-optimal D's loss here is 1.10 (Monte Carlo)
    assert fit["steps"] == 400 and fit["loss"] < 2 * math.log(2) - 0.1
    g = torch.Generator().manual_seed(5)
    raw = modes.mixture_metrics(G(G.sample_z(2500, generator=g)), data.centers, data.std)
    sampler = drs.RejectionSampler(G, D, settings, torch.device("cpu"), init="fresh", fit=fit)
    x = sampler.generate(2500, seed=5, batch_size=500)
    kept = modes.mixture_metrics(x, data.centers, data.std)
    # half junk, 28 % of which lands within 3 sigma of a centre (9 disks of radius 0.6
    # in a 6 x 6 box): 0.5 * 0.989 + 0.5 * 0.28 = 0.635 expected
    assert raw["high_quality"] < 0.66
    assert kept["high_quality"] > 0.8, kept
    assert kept["modes"] == 9 and 0 < sampler.last["acceptance"] < 1


def test_estimator_files_hold_tensors_only(tmp_path):
    D = vanilla.Discriminator((2,), width=8, depth=1, pieces=2)
    path = drs.save_estimator(tmp_path / "e.pt", D, {"fit": {"steps": 3}, "init": "fresh"})
    other = vanilla.Discriminator((2,), width=8, depth=1, pieces=2)
    assert drs.load_estimator(path, other)["fit"] == {"steps": 3}
    assert all(
        torch.equal(a, b) for a, b in zip(D.state_dict().values(), other.state_dict().values())
    )
    torch.save(
        {"format": drs.ESTIMATOR_FORMAT, "state_dict": {}, "meta": GanrunError("x")},
        tmp_path / "evil.pt",
    )
    with pytest.raises(CheckpointError, match="not a readable rejection estimator"):
        drs.load_estimator(tmp_path / "evil.pt", other)
    with pytest.raises(CheckpointError, match="does not fit"):
        drs.load_estimator(path, vanilla.Discriminator((2,), width=4, depth=1, pieces=2))


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("drsrun") / "run"
    extra = ["model.width=16", "model.pack=2", "trainer.batch_size=32", "logger.tensorboard=false"]
    run_train(run, tiny_overrides("pacgan_mlp", "grid", *extra))
    return run


def test_eval_through_drs_stamps_the_protocol_and_reuses_the_estimator(grid_run, tmp_path, capsys):
    args = ["eval", f"ckpt={grid_run}", "metrics=[modes]", "n_modes=300"]
    drs_args = [
        "rejection.method=drs",
        "rejection.steps=30",
        "rejection.burn_in=500",
        "rejection.batch_size=100",
    ]
    cli.main([*args, f"out={tmp_path / 'plain.json'}"])
    cli.main([*args, *drs_args, f"out={tmp_path / 'drs.json'}"])
    out = capsys.readouterr().out
    assert "+drs" in out and "samples through drs rejection" in out
    (plain,) = json.loads((tmp_path / "plain.json").read_text())
    (rec,) = json.loads((tmp_path / "drs.json").read_text())
    assert "sampler" not in plain["protocol"]
    sampler = rec["protocol"]["sampler"]
    # the recipe's D is packed (pack 2): the estimator is a fresh per-sample D
    assert sampler["method"] == "drs" and sampler["estimator"]["init"] == "fresh"
    assert sampler["estimator"]["steps"] == 30 and sampler["percentile"] == 95.0
    assert rec["rejection"]["fit"]["steps"] == 30 and 0 < rec["rejection"]["acceptance"] <= 1
    (est,) = list((grid_run / "rejection").iterdir())
    assert est.name.startswith("step-00000003-G-")
    mtime = est.stat().st_mtime_ns

    # the same fit settings load the estimator instead of fitting it again, and the
    # scores are the same; plain and DRS scores never share one table
    from ganrun.commands.eval import format_tables

    cli.main([*args, *drs_args, f"out={tmp_path / 'again.json'}"])
    assert "loaded the estimator fitted earlier" in capsys.readouterr().out
    assert est.stat().st_mtime_ns == mtime
    assert json.loads((tmp_path / "again.json").read_text())[0]["scores"] == rec["scores"]
    table = format_tables([("plain", plain), ("drs", rec)])
    assert "2 different protocols" in table and "sampler" in table


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["rejection.method=mh"], "rejection.method=mh is unknown; choose from: drs"),
        (["rejection.method=drs", "rejection.percentile=120"], "rejection.percentile must be"),
        (["rejection.method=drs", "rejection.steps=0"], "rejection.steps must be >= 1"),
    ],
)
def test_bad_rejection_settings_give_one_line(extra, expected, grid_run, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", f"ckpt={grid_run}", "metrics=[modes]", *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("ganrun: error:") and err.count("\n") == 1, err
    assert expected in err
    assert not (grid_run / "eval").exists()  # nothing written


def test_sample_through_drs_reuses_the_estimator_of_eval(grid_run, tmp_path, capsys):
    fit = ["rejection.method=drs", "rejection.steps=30", "rejection.burn_in=500",
           "rejection.batch_size=100"]  # fmt: skip
    cli.main(["eval", f"ckpt={grid_run}", "metrics=[modes]", "n_modes=100", *fit,
              f"out={tmp_path / 'e.json'}"])  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "drs.png"
    cli.main(["sample", f"ckpt={grid_run}", "n=200", f"out={out}", *fit])
    log = capsys.readouterr().out
    assert out.is_file() and out.stat().st_size > 0
    assert "loaded the estimator fitted earlier" in log and "rejection: kept 200 of" in log


def test_sample_refuses_drs_with_interpolation(grid_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sample", f"ckpt={grid_run}", "interpolate=true", "rejection.method=drs",
                  f"out={tmp_path / 'x.png'}"])  # fmt: skip
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "drop interpolate" in err, err
    assert not (tmp_path / "x.png").exists()


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("drscgan") / "run"
    run_train(run, tiny_overrides("cgan", "mnist_embedded", "logger.tensorboard=false"))
    return run


def test_conditional_models_are_refused_before_anything_runs(cgan_run, tmp_path, capsys):
    run = cgan_run
    for command in (["eval", "metrics=[modes]"], ["sample", f"out={tmp_path / 'x.png'}"]):
        with pytest.raises(SystemExit) as e:
            cli.main([*command, f"ckpt={run}", "rejection.method=drs"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1, err
        assert "unconditional models only" in err
    assert not (run / "rejection").exists() and not (tmp_path / "x.png").exists()


def test_a_rewritten_checkpoint_gets_a_new_estimator(grid_run, tmp_path, capsys):
    import shutil

    from ganrun import checkpoint as ckpt

    run = tmp_path / "run"
    shutil.copytree(grid_run, run, ignore=shutil.ignore_patterns("rejection"))
    args = ["eval", f"ckpt={run}", "metrics=[modes]", "n_modes=100", "rejection.method=drs",
            "rejection.steps=20", "rejection.burn_in=200", f"out={tmp_path / 'e.json'}"]  # fmt: skip
    cli.main(args)
    assert "fitting the estimator" in capsys.readouterr().out
    # the same file name now holds other weights (as best.pt does during training)
    path = run / "checkpoints" / "step-00000003.pt"
    state = ckpt.load_file(path)
    for t in state["models"]["G"].values():
        if t.is_floating_point():
            t.add_(0.01)
    torch.save(state, path)
    cli.main(args)
    assert "was fitted for other weights; fitting again" in capsys.readouterr().out
    cli.main(args)
    assert "loaded the estimator fitted earlier" in capsys.readouterr().out


def test_drs_samples_an_image_model(tmp_path_factory, tmp_path, capsys):
    # DCGAN's D (unpacked): the estimator starts from the checkpoint's D
    run = tmp_path_factory.mktemp("drsdcgan") / "run"
    run_train(run, tiny_overrides("dcgan", "mnist_embedded", "logger.tensorboard=false"))
    capsys.readouterr()
    out = tmp_path / "drs.png"
    cli.main(["sample", f"ckpt={run}", "n=16", "nrow=4", f"out={out}", "rejection.method=drs",
              "rejection.steps=3", "rejection.batch_size=16", "rejection.burn_in=32"])  # fmt: skip
    log = capsys.readouterr().out
    assert out.is_file() and "fitting the estimator (3 steps, gan-D)" in log
    assert "rejection: kept 16 of" in log

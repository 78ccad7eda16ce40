"""`ganrun eval`, `ganrun fit-evaluator` and `ganrun fetch-weights` through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from ganrun import cli
from tests.conftest import cli_error, compose_config, ganrun_exe, run_train, tiny_overrides
from tests.test_metrics import save_tiny_evaluator

# A proxy on a closed local port: downloads fail at once, network or not.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("evalcache")
    save_tiny_evaluator(root / "cache")
    return {
        "GANRUN_CACHE": str(root / "cache"),
        "TORCH_HOME": str(root / "torch"),
        "GANRUN_INCEPTION_WEIGHTS": "",
    }


@pytest.fixture(scope="module")
def run(env, tmp_path_factory) -> Path:
    """A tiny run evaluated during training (eval.n=20): metrics.jsonl has 2 entries."""
    run = tmp_path_factory.mktemp("evalrun") / "run"
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        extra = ["eval=offline", "eval.metrics=[fid,is]", "eval.n=20", "eval.every=2"]
        run_train(
            run, tiny_overrides("dcgan", "mnist_embedded", *extra, "logger.tensorboard=false")
        )
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    return run


def ganrun(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    threads = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    full = {**os.environ, **threads, "HYDRA_FULL_ERROR": "0", **env}
    return subprocess.run(
        [ganrun_exe(), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300
    )


def test_eval_end_to_end_offline(run, env, tmp_path):
    args = [f"ckpt={run}", "metrics=[fid,is,kid,prc]", "n=40", "features=mnist-classifier"]
    r = ganrun("eval", *args, "history=true", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    out = r.stdout
    for name in ("fid", "is", "kid", "precision", "recall"):
        assert f"{name}[mnist-classifier]" in out
    # training-time entries (n=20) and this one (n=40): two tables and a note
    assert "note:" in out and "fidelity.n_generated" in out and "protocol 2:" in out
    assert "40 generated vs 500 real (mnist_embedded test, 32px 1ch)" in out
    written = run / "eval" / "step-00000003.json"
    records = json.loads(written.read_text())
    assert len(records) == 1 and records[0]["step"] == 3 and records[0]["generator"] == "G"
    proto = records[0]["protocol"]["fidelity"]
    assert proto["n_generated"] == 40 and proto["n_real"] == 500
    assert proto["features"] == "mnist-classifier" and len(proto["weights_sha256"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written in the cwd

    # in-process, same settings, out=: the same numbers (seeded samples, cached real stats)
    from ganrun.commands.eval import evaluate

    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        cfg = compose_config([*args, f"out={tmp_path / 'scores.json'}"], config_name="evaluate")
        again = evaluate(cfg)
    assert again[0]["scores"] == records[0]["scores"]
    assert json.loads((tmp_path / "scores.json").read_text())[0]["scores"] == again[0]["scores"]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["eval", "ckpt=RUN", "metrics=[fud]"], "unknown metric 'fud'"),
        (["eval", "ckpt=/no/such/run"], "no checkpoint at /no/such/run"),
        (["eval", "ckpt=RUN", "features=nope"], "features=nope is not fitted"),
        (["eval"], "ckpt is required"),
        (["eval", "ckpt=RUN", "out=x.txt"], "should name a .json file"),
        (["train", "eval=offline", "eval.metrics=[fid,fud]"], "unknown metric 'fud'"),
        (["train", "dataset=ring", "model=vanilla", "eval=offline"], "needs image data"),
        (["train", "eval=offline", "eval.metrics=[fid]", "eval.best=recall"], "needs metric prc"),
        (["train", "eval=bogus"], "eval=bogus is not an option"),
        (["train", "eval=offline", "eval.split=valid"], "split=valid"),
        (["train", "eval=offline", "eval.features=nope"], "features=nope is not fitted"),
        (["fit-evaluator", "dataset=ring"], "needs an image dataset"),
        (["fit-evaluator", "name=inception-v3-compat"], "is a torch-fidelity extractor"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, expected, run, env, capsys, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    args = [a.replace("RUN", str(run)) for a in args]
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("ganrun: error:") and err.count("\n") == 1, err
    assert expected in err


def test_fetch_weights_offline_fails_with_one_line(env, tmp_path):
    r = ganrun("fetch-weights", env={**env, **OFFLINE}, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganrun: error: could not download"), lines
    hub = Path(env["TORCH_HOME"]) / "hub" / "checkpoints"
    assert "https://github.com/toshas/torch-fidelity/releases" in lines[0] and str(hub) in lines[0]
    assert not hub.exists() or not any(hub.iterdir())  # no partial file left


def test_inception_metrics_without_weights_fail_with_one_line(
    run, env, tmp_path, capsys, monkeypatch
):
    from ganrun.metrics import weights

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "argv", ["ganrun"])

    def offline(url, dest):
        raise urllib.error.URLError("[Errno 111] Connection refused")

    monkeypatch.setattr(weights, "_download", offline)
    err = cli_error(["eval", f"ckpt={run}", "metrics=[fid]", "n=20"], capsys)
    assert "weights-inception-2015-12-05-6726825d.pth" in err and str(weights.hub_path()) in err

    bad = tmp_path / "inception.pth"
    bad.write_bytes(b"truncated")
    err = cli_error(["eval", f"ckpt={run}", "metrics=[is]", f"inception_weights={bad}"], capsys)
    assert "expected 6726825d0af5f729" in err and str(bad) in err


def test_train_with_fid_offline_fails_before_the_run_dir_exists(env, tmp_path, capsys, monkeypatch):
    from ganrun.metrics import weights

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "argv", ["ganrun"])
    monkeypatch.chdir(tmp_path)
    calls = []

    def offline(url, dest):
        calls.append(url)
        raise urllib.error.URLError("[Errno 111] Connection refused")

    monkeypatch.setattr(weights, "_download", offline)
    args = ["train", *tiny_overrides("dcgan", "mnist_embedded", "eval=fid")]
    err = cli_error(args, capsys)
    assert len(calls) == 1 and "weights-inception-2015-12-05-6726825d.pth" in err
    assert list(tmp_path.iterdir()) == []  # no run dir, no outputs/
    # eval.required=false: the same run is allowed to start (and skips the metric)
    from ganrun.training.evaluation import check_train_eval

    check_train_eval(
        compose_config(tiny_overrides("dcgan", "mnist_embedded", "eval=fid", "eval.required=false"))
    )
    assert len(calls) == 1


def test_fit_evaluator_through_the_cli(env, tmp_path, monkeypatch):
    from hydra.core.global_hydra import GlobalHydra

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "clf.pt"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ganrun"])
    args = ["epochs=1", "width=4", "feature_dim=8", "min_accuracy=0", f"out={out}"]
    try:
        cli.main(["fit-evaluator", *args])
    finally:
        GlobalHydra.instance().clear()
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["dataset"] == "mnist_embedded" and meta["name"] == "mnist-classifier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.pt"]


def test_eval_truncates_stylegan_in_w_and_biggan_in_z(env, tmp_path, monkeypatch):
    """`ganrun eval truncation=psi` on StyleGAN: psi acts on w inside G (the paper's
    truncation study), recorded with the scores; BigGAN's |z| threshold still works."""
    from ganrun.commands.eval import evaluate
    from ganrun.commands.sample import load_generator
    from ganrun.metrics.sampling import generate
    from ganrun.models.biggan import Generator as BigGAN

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    run = tmp_path / "stylegan"
    run_train(run, tiny_overrides("stylegan", "mnist_embedded", "trainer.steps=2",
                                  "trainer.batch_size=4", "logger.tensorboard=false"))  # fmt: skip
    args = [f"ckpt={run}", "metrics=[fid]", "n=16", "batch_size=8", "features=mnist-classifier"]
    cfg = compose_config([*args, "truncation=0.7", f"out={tmp_path / 's.json'}"], "evaluate")
    (record,) = evaluate(cfg)
    assert record["truncation"] == 0.7 and record["generator"] == "G_ema"
    assert record["scores"]["fid[mnist-classifier]"] >= 0

    G, _, _ = load_generator(run, torch.device("cpu"))
    draw = dict(device=torch.device("cpu"), seed=1, batch_size=8)
    at = {psi: generate(G, 8, truncation=psi, **draw) for psi in (0.0, 1.0)}
    assert not torch.allclose(at[0.0], at[1.0])  # same z and noise, other psi
    torch.testing.assert_close(at[1.0], generate(G, 8, **draw))  # psi = 1: w itself
    with torch.no_grad():  # psi = 0: every w at w_avg; with fixed noise, one image
        x = G(G.sample_z(3), truncation=0.0, noise="const")
    torch.testing.assert_close(x, x[:1].expand_as(x))

    torch.manual_seed(0)
    big = BigGAN((1, 32, 32), num_classes=2, z_dim=16, width=2, shared_dim=8).eval()
    x = generate(big, 4, truncation=0.5, **draw)
    z = big.sample_z(4, generator=torch.Generator().manual_seed(1), truncation=0.5)
    with torch.no_grad():
        torch.testing.assert_close(x, big(z, torch.arange(4) % 2))
    assert z.abs().max() <= 0.5

"""Evaluation: torch-fidelity wiring, formulas with known answers, the real-statistics
cache, weights checks, the offline classifier, and the training hook."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from ganrun import checkpoint as ckpt
from ganrun.data.embedded import EmbeddedMNIST
from ganrun.errors import ConfigError, GanrunError
from ganrun.metrics import classifier as clf
from ganrun.metrics import features, fidelity, weights
from ganrun.metrics.evaluate import Evaluation, Settings
from ganrun.paths import group_options
from tests.conftest import compose_config, run_train, tiny_overrides

REF = fidelity.reference_of(
    {"_target_": "ganrun.data.embedded.EmbeddedMNIST", "resolution": 28, "channels": 1},
    "mnist_embedded",
    "test",
    (1, 28, 28),
)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty ganrun cache and torch.hub dir; no weights file from the environment."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GANRUN_CACHE", str(root))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    return root


def save_tiny_evaluator(root: Path, name: str = "mnist-classifier") -> Path:
    """An untrained (seeded) classifier: fine for checking metric plumbing."""
    torch.manual_seed(0)
    model = clf.DigitClassifier(1, 10, 28, width=8, feature_dim=32)
    return clf.save_classifier(model, root / "evaluators" / f"{name}.pt", {"name": name})


@pytest.fixture
def tiny_evaluator(cache) -> features.Features:
    save_tiny_evaluator(cache)
    return features.resolve_features("mnist-classifier")


def mnist_test_split() -> tuple[torch.Tensor, EmbeddedMNIST]:
    test = EmbeddedMNIST(split="test")
    return test.arrays()[0], test


def classifier_features(feats: features.Features, x: torch.Tensor) -> np.ndarray:
    net = clf.load_classifier(feats.weights_path)
    with torch.no_grad():
        h, _ = net.features_and_logits(features.prepare_for_classifier(x, 1, 28))
    return h.double().numpy()


# --------------------------------------------------------------------------- formulas
def test_fid_of_a_set_against_itself_is_zero(tiny_evaluator):
    x, source = mnist_test_split()
    real = fidelity.RealImages(source, None, 0, rgb=False)
    scores, protocol = fidelity.fidelity_metrics(x, real, {"fid"}, tiny_evaluator, ref=REF)
    assert abs(scores["fid[mnist-classifier]"]) < 1e-6
    assert protocol["n_generated"] == protocol["n_real"] == 500
    assert protocol["features"] == "mnist-classifier"
    assert protocol["weights_sha256"] == clf.file_sha256(Path(tiny_evaluator.weights_path))


# an untrained net has dead ReLU units: singular covariances, for scipy and torch-fidelity alike
@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_fid_equals_a_direct_frechet_distance_on_the_same_features(tiny_evaluator):
    x_real, source = mnist_test_split()
    x_fake = 255 - EmbeddedMNIST(split="train").arrays()[0][:300]  # inverted digits
    real = fidelity.RealImages(source, None, 0, rgb=False)
    scores, _ = fidelity.fidelity_metrics(x_fake, real, {"fid"}, tiny_evaluator, ref=REF)
    f1, f2 = (
        classifier_features(tiny_evaluator, x_fake),
        classifier_features(tiny_evaluator, x_real),
    )
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    assert expected > 0.01  # two different sets
    assert scores["fid[mnist-classifier]"] == pytest.approx(expected, rel=1e-4)


class OneHotByPixel:
    """A torch-fidelity extractor for tests: class = first pixel value mod 10,
    predicted with certainty (logits 0 / 60)."""

    @staticmethod
    def make():
        from torch_fidelity.feature_extractor_base import FeatureExtractorBase

        class Extractor(FeatureExtractorBase):
            def __init__(self, name, features_list, **kwargs):
                super().__init__(name, features_list)

            @staticmethod
            def get_provided_features_list():
                return ("logits_unbiased", "flat")

            @staticmethod
            def get_default_feature_layer_for_metric(metric):
                return "logits_unbiased" if metric == "isc" else "flat"

            @staticmethod
            def can_be_compiled():
                return False

            @staticmethod
            def get_dummy_input_for_compile():
                return None

            def forward(self, x):
                k = x[:, 0, 0, 0].long() % 10
                out = {
                    "logits_unbiased": torch.nn.functional.one_hot(k, 10).float() * 60,
                    "flat": x.flatten(1).float(),
                }
                return tuple(out[f] for f in self.features_list)

        return Extractor


@pytest.fixture(scope="module")
def onehot_features() -> features.Features:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if "test-onehot" not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor("test-onehot", OneHotByPixel.make())
    return features.Features("test-onehot", None, "test", False, "none")


@pytest.mark.parametrize("labels,expected", [(np.arange(200) % 10, 10.0), (np.full(200, 3), 1.0)])
def test_inception_score_of_certain_predictions(onehot_features, labels, expected):
    x = torch.zeros(200, 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.as_tensor(labels, dtype=torch.uint8)
    scores, protocol = fidelity.fidelity_metrics(x, None, {"is"}, onehot_features, isc_splits=1)
    assert scores["is[test-onehot]"] == pytest.approx(expected, rel=1e-5)
    assert protocol["n_real"] is None and protocol["reference"] is None


def test_scores_are_what_torch_fidelity_itself_reports(tiny_evaluator):
    import torch_fidelity

    x_real, source = mnist_test_split()
    x_fake = EmbeddedMNIST(split="train").arrays()[0][:200]
    ours, protocol = fidelity.fidelity_metrics(
        x_fake,
        fidelity.RealImages(source, None, 0, rgb=False),
        {"fid", "is", "kid", "prc"},
        tiny_evaluator,
        ref=REF,
        seed=7,
        kid_subsets=10,  # 100 in evaluations; fewer keep the test quick
    )
    direct = torch_fidelity.calculate_metrics(
        input1=fidelity.ImageTensors(x_fake, rgb=False),
        input2=fidelity.ImageTensors(x_real, rgb=False),
        isc=True,
        fid=True,
        kid=True,
        prc=True,
        feature_extractor="mnist-classifier",
        feature_extractor_weights_path=tiny_evaluator.weights_path,
        cuda=False,
        kid_subset_size=200,
        kid_subsets=10,
        rng_seed=7,
        cache=False,
        save_cpu_ram=True,  # no worker processes; the same numbers (see torch_fidelity.metric_prc)
        verbose=False,
    )
    assert len(direct) == 8
    for key, name in fidelity.KEYS.items():
        assert ours[f"{name}[mnist-classifier]"] == pytest.approx(direct[key], rel=1e-9, abs=1e-12)
    assert protocol["kid_subset_size"] == 200


def test_second_evaluation_reads_the_real_statistics_from_the_cache(tiny_evaluator, cache):
    _, source = mnist_test_split()
    reads = []
    original = source.arrays

    def counting_arrays():
        reads.append(1)
        return original()

    source.arrays = counting_arrays
    x_fake = EmbeddedMNIST(split="train").arrays()[0][:100]
    metrics = {"fid", "kid", "prc"}
    first, p1 = fidelity.fidelity_metrics(
        x_fake, fidelity.RealImages(source, None, 0, False), metrics, tiny_evaluator, ref=REF
    )
    assert reads, "the first evaluation must read the real images"
    reads.clear()
    second, p2 = fidelity.fidelity_metrics(
        x_fake, fidelity.RealImages(source, None, 0, False), metrics, tiny_evaluator, ref=REF
    )
    assert not reads, "the second evaluation read the real images again"
    assert first == second and p1 == p2 and p2["n_real"] == 500
    names = [p.name for p in (cache / "fidelity").iterdir()]
    # the cache holds the real features as plain tensors; torch-fidelity's FID statistics
    # (NumPy pickles) are never kept (ganrun.metrics.trusted)
    assert any("mnist_embedded-test" in n and "-features-" in n for n in names)
    assert not any("stat-fid" in n or n.startswith(".staging-") for n in names), names
    # another real subset is another cache entry
    fidelity.fidelity_metrics(
        x_fake, fidelity.RealImages(source, 100, 0, False), {"fid"}, tiny_evaluator, ref=REF
    )
    assert reads


# --------------------------------------------------------------------------- weights
def test_offline_without_weights_fails_with_one_line(cache, monkeypatch):
    def offline(url, dest):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights, "_download", offline)
    with pytest.raises(weights.WeightsError) as e:
        features.resolve_features("inception-v3-compat")
    msg = str(e.value)
    assert "\n" not in msg
    assert weights.INCEPTION_URL in msg and str(weights.hub_path()) in msg
    assert weights.hub_path().parent == cache.parent / "torch" / "hub" / "checkpoints"


def test_wrong_weights_file_is_refused(cache, tmp_path, monkeypatch):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not the inception weights")
    with pytest.raises(weights.WeightsError, match=weights.INCEPTION_SHA256):
        weights.resolve_inception(str(bad))
    monkeypatch.setenv(weights.ENV_VAR, str(bad))
    with pytest.raises(weights.WeightsError, match=weights.ENV_VAR):
        weights.resolve_inception()
    with pytest.raises(weights.WeightsError, match="no file at"):
        weights.resolve_inception(str(tmp_path / "missing.pth"))


def test_weights_with_the_expected_digest_are_used(cache, tmp_path, monkeypatch):
    good = tmp_path / "weights.pth"
    good.write_bytes(b"stand-in bytes")
    monkeypatch.setattr(weights, "INCEPTION_SHA256", clf.file_sha256(good))
    monkeypatch.setenv(weights.ENV_VAR, str(good))
    assert weights.resolve_inception() == good
    # a fetch lands in torch.hub's cache only after the digest matched
    monkeypatch.delenv(weights.ENV_VAR)
    monkeypatch.setattr(weights, "_download", lambda url, dest: Path(dest).write_bytes(b"junk"))
    with pytest.raises(weights.WeightsError, match="download"):
        weights.fetch()
    assert not weights.hub_path().exists()
    monkeypatch.setattr(
        weights, "_download", lambda url, dest: Path(dest).write_bytes(b"stand-in bytes")
    )
    assert (
        weights.fetch() == weights.hub_path() and weights.resolve_inception() == weights.hub_path()
    )


def test_the_known_digest_matches_the_file_name():
    assert weights.INCEPTION_FILE.rsplit("-", 1)[1].split(".")[0] == weights.INCEPTION_SHA256[:8]
    assert weights.INCEPTION_URL.endswith(weights.INCEPTION_FILE)
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert URL_INCEPTION_V3 == weights.INCEPTION_URL


# --------------------------------------------------------------------------- classifier
def test_tiny_evaluator_loads_weights_only_and_gives_logits(cache):
    path = save_tiny_evaluator(cache)
    assert torch.load(path, weights_only=True)["format"] == clf.FORMAT
    model = clf.load_classifier(path, "cpu")
    out = model(torch.rand(5, 1, 28, 28) * 2 - 1)
    assert out.shape == (5, 10) and not model.training


def test_features_given_by_path_are_named_after_the_file(cache, tmp_path):
    from ganrun.metrics.evaluate import best_score_name

    path = save_tiny_evaluator(tmp_path, "digits")
    assert features.resolve_features(str(path)).name == "digits"
    settings = Settings(metrics=["fid"], features=str(path))
    assert best_score_name("fid", settings, "image") == "fid[digits]"


def test_unfitted_features_give_one_clear_line(cache):
    with pytest.raises(ConfigError, match="ganrun fit-evaluator") as e:
        features.resolve_features("mnist-classifier")
    assert "\n" not in str(e.value)
    (cache / "evaluators").mkdir(parents=True)
    (cache / "evaluators" / "junk.pt").write_bytes(b"junk")
    with pytest.raises(GanrunError, match="not a readable evaluator"):
        features.resolve_features("junk")


def test_fit_evaluator_trains_and_refuses_a_weak_classifier(cache):
    from ganrun.commands.fit_evaluator import fit

    cfg = compose_config(
        ["epochs=1", "width=4", "feature_dim=8", "min_accuracy=0.0", "device=cpu"],
        config_name="fit_evaluator",
    )
    path = fit(cfg, "mnist_embedded")
    meta = torch.load(path, weights_only=True)["meta"]
    assert meta["n_train"] == 4500 and meta["n_held_out"] == 500 and 0.15 < meta["accuracy"] <= 1
    assert features.resolve_features("mnist-classifier").name == "mnist-classifier"
    strict = compose_config(
        ["epochs=1", "width=4", "feature_dim=8", "min_accuracy=1.0", "name=strict"],
        config_name="fit_evaluator",
    )
    with pytest.raises(GanrunError, match="below min_accuracy"):
        fit(strict)
    assert not (cache / "evaluators" / "strict.pt").exists()


@pytest.mark.slow
def test_default_evaluator_reaches_98_percent_on_held_out_digits(cache):
    from ganrun.commands.fit_evaluator import fit

    path = fit(compose_config(["device=cpu"], config_name="fit_evaluator"), "mnist_embedded")
    meta = torch.load(path, weights_only=True)["meta"]
    print(f"held-out accuracy {meta['accuracy']:.4f} in {meta['seconds']:.1f} s")
    assert meta["accuracy"] >= 0.98


# --------------------------------------------------------------------------- dispatch
def test_settings_reject_bad_input():
    with pytest.raises(ConfigError, match="unknown metric 'fud'"):
        Settings(metrics=["fud"]).check()
    with pytest.raises(ConfigError, match="2-D points"):
        Settings(metrics=["fid"]).check("points")
    with pytest.raises(ConfigError, match="n >= 10"):
        Settings(metrics=["is"], n=5).check()
    from ganrun.training.evaluation import check_train_eval

    cfg = compose_config(tiny_overrides("dcgan", "mnist_embedded", "eval.metrics=[is]"))
    with pytest.raises(ConfigError, match="eval.best=fid needs metric fid"):
        check_train_eval(cfg)


@pytest.mark.parametrize("option", group_options("eval"))
def test_every_eval_option_composes_and_checks(option, cache, monkeypatch):
    from ganrun.metrics import weights
    from ganrun.metrics.evaluate import SCORES_OF
    from ganrun.training.evaluation import check_train_eval

    save_tiny_evaluator(cache)
    fetched = []  # the Inception weights are located (or fetched) before the run starts
    monkeypatch.setattr(
        weights, "resolve_inception", lambda path=None, download=True: fetched.append(download)
    )

    model, dataset = ("vanilla", "ring") if option == "modes" else ("dcgan", "mnist_embedded")
    cfg = compose_config(tiny_overrides(model, dataset, f"eval={option}"))
    check_train_eval(cfg)
    assert fetched == ([True] if option == "fid" else [])  # the only Inception option
    if option != "none":
        assert cfg.eval.metrics and cfg.eval.every >= 1
        assert any(cfg.eval.best in SCORES_OF[m] for m in cfg.eval.metrics)


def test_modes_metric_calls_mode_metrics(monkeypatch, cache):
    calls = []

    def mode_metrics(samples, data, classifier=None):
        calls.append((samples.shape, type(data).__name__, classifier))
        return {"modes": 7, "high_quality": 0.5, "reverse_kl": 0.25, "kl": 0.125}

    from ganrun.metrics import modes

    monkeypatch.setattr(modes, "mode_metrics", mode_metrics)
    cfg = compose_config(tiny_overrides("vanilla", "ring"))
    from ganrun.build import build_models

    G, _ = build_models(cfg, (2,), 0)
    ev = Evaluation(
        Settings(metrics=["modes"]), cfg, dataset_name="ring", device=torch.device("cpu")
    )
    scores, protocol = ev.run(G)
    assert calls == [(torch.Size([2500, 2]), "Ring", None)]
    assert scores == {"modes": 7.0, "high_quality": 0.5, "reverse_kl": 0.25, "kl": 0.125}
    assert protocol["modes"]["n_generated"] == 2500


def test_modes_on_ring_with_the_real_mode_counter(cache):
    cfg = compose_config(tiny_overrides("vanilla", "ring"))
    from ganrun.build import build_models

    G, _ = build_models(cfg, (2,), 0)
    ev = Evaluation(
        Settings(metrics=["modes"], n_modes=200),
        cfg,
        dataset_name="ring",
        device=torch.device("cpu"),
    )
    scores, protocol = ev.run(G)
    assert {"modes", "high_quality", "reverse_kl"} <= set(scores)
    assert 0 <= scores["modes"] <= 8 and protocol["modes"]["n_generated"] == 200


def test_modes_needs_known_modes_and_a_fitted_classifier(cache):
    from ganrun.training.evaluation import check_train_eval

    with pytest.raises(ConfigError, match="known modes"):
        check_train_eval(compose_config(tiny_overrides("dcgan", "mnist_embedded", "eval=modes")))
    stacked = compose_config(tiny_overrides("dcgan", "stacked_mnist", "eval=modes"))
    with pytest.raises(ConfigError, match="classifier=mnist-classifier is not fitted"):
        check_train_eval(stacked)
    save_tiny_evaluator(cache)
    check_train_eval(stacked)
    from ganrun.build import build_models

    G, _ = build_models(stacked, (3, 28, 28), 0)
    settings = Settings(metrics=["modes"], n_modes=50)
    ev = Evaluation(settings, stacked, dataset_name="stacked_mnist", device=torch.device("cpu"))
    scores, protocol = ev.run(G)
    assert set(scores) >= {"modes[mnist-classifier]", "kl[mnist-classifier]"}
    assert 1 <= scores["modes[mnist-classifier]"] <= 50
    assert protocol["modes"]["classifier"] == "mnist-classifier"
    assert len(protocol["modes"]["classifier_sha256"]) == 64


def test_protocols_never_share_a_table():
    from ganrun.commands.eval import format_tables

    def rec(n):
        proto = {"fidelity": {"n_generated": n, "n_real": 500, "reference": REF.__dict__,
                              "features": "f", "weights_sha256": "ab", "resize": "none",
                              "torch_fidelity": "0.4.0"}}  # fmt: skip
        return {"step": n, "scores": {"fid[f]": 1.0 / n}, "protocol": proto}

    one = format_tables([("a", rec(100)), ("b", rec(100))])
    assert "note" not in one and one.count("protocol") == 1
    two = format_tables([("a", rec(100)), ("b", rec(50))])
    assert two.startswith("note:") and "fidelity.n_generated" in two
    assert two.count("protocol 1:") == 1 and two.count("protocol 2:") == 1


# --------------------------------------------------------------------------- training
def test_training_with_eval_writes_metrics_best_and_resume_keeps_the_best(tmp_path, cache):
    save_tiny_evaluator(cache)
    run = tmp_path / "run"
    evaluation = ["eval=offline", "eval.metrics=[fid,is]", "eval.n=40", "eval.every=2"]
    base = tiny_overrides("dcgan", "mnist_embedded", *evaluation, "trainer.ema_decay=0.5")
    _, result = run_train(run, [*base, "trainer.steps=3"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3]
    for r in records:
        assert r["generator"] == "G_ema"
        assert r["protocol"]["fidelity"]["n_generated"] == 40
        assert r["protocol"]["fidelity"]["reference"]["split"] == "test"
        assert set(r["scores"]) == {
            "fid[mnist-classifier]",
            "is[mnist-classifier]",
            "is_std[mnist-classifier]",
        }
    fids = {r["step"]: r["scores"]["fid[mnist-classifier]"] for r in records}
    best_step = min(fids, key=fids.get)
    best = ckpt.load_file(run / "checkpoints" / "best.pt")
    assert best["step"] == best_step and best["format"] == ckpt.FORMAT
    assert best["hooks"]["evaluator"]["best"]["value"] == fids[best_step]
    assert result["sweep/value"] == fids[best_step]  # what a sweeper gets
    assert [s for s, _ in ckpt.step_checkpoints(run / "checkpoints")] == [2, 3]

    # resume from step 3: the best-so-far comes back from the checkpoint
    from ganrun.build import build
    from ganrun.commands.train import prepare
    from ganrun.training.evaluation import make_evaluator
    from ganrun.training.loop import Trainer

    cfg = compose_config([*base, f"resume={run}", "trainer.steps=6"])
    cfg, state, source = prepare(cfg, [f"resume={run}", "trainer.steps=6"])
    built = build(cfg)
    hook = make_evaluator(cfg, built, run, {"dataset": "mnist_embedded"})
    assert hook.evaluation.data is built.data  # one data source per run, not two
    trainer = Trainer(cfg, run, built, hooks=[hook])
    trainer.load_state(state, source)
    assert hook.best["value"] == fids[best_step] and hook.best["step"] == best_step
    trainer.run()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3, 4, 6]
    all_fids = {r["step"]: r["scores"]["fid[mnist-classifier]"] for r in records}
    overall = min(all_fids, key=all_fids.get)
    assert ckpt.load_file(run / "checkpoints" / "best.pt")["step"] == overall
    assert hook.best["value"] == all_fids[overall]


def test_resume_from_an_earlier_checkpoint_drops_later_evaluations(tmp_path, cache):
    save_tiny_evaluator(cache)
    run = tmp_path / "run"
    base = tiny_overrides(
        "dcgan", "mnist_embedded", "eval=offline", "eval.metrics=[fid]", "eval.n=20",
        "eval.every=1", "logger.tensorboard=false", "trainer.keep_checkpoints=5",
    )  # fmt: skip
    run_train(run, [*base, "trainer.steps=3"])
    run_train(run, [*base, "trainer.steps=3", f"resume={run}/checkpoints/step-00000002.pt"])
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_a_changed_protocol_restarts_the_best_so_far(tmp_path, cache, caplog):
    save_tiny_evaluator(cache)
    run = tmp_path / "run"
    base = tiny_overrides(
        "dcgan", "mnist_embedded", "eval=offline", "eval.metrics=[fid]", "eval.every=3",
        "logger.tensorboard=false",
    )  # fmt: skip
    run_train(run, [*base, "eval.n=20"])
    with caplog.at_level("WARNING"):
        run_train(run, [*base, "eval.n=30", "trainer.steps=4", f"resume={run}"])
    assert any("protocol changed" in r.getMessage() for r in caplog.records)
    assert ckpt.load_file(run / "checkpoints" / "best.pt")["step"] == 4


def test_eval_not_required_goes_on_without_the_metric(tmp_path, cache, monkeypatch, caplog):
    monkeypatch.setattr(
        weights, "_download", lambda url, dest: (_ for _ in ()).throw(OSError("offline"))
    )
    run = tmp_path / "run"
    extra = ["eval=fid", "eval.required=false", "eval.every=2", "logger.tensorboard=false"]
    with caplog.at_level("WARNING"):
        _, result = run_train(run, tiny_overrides("dcgan", "mnist_embedded", *extra))
    warnings = [r for r in caplog.records if "goes on without" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert (run / "checkpoints" / "step-00000003.pt").is_file()  # trained to the end
    assert not (run / "metrics.jsonl").exists() and not (run / "checkpoints" / "best.pt").exists()
    assert result["sweep/value"] is None
    with pytest.raises(weights.WeightsError):
        run_train(tmp_path / "strict", tiny_overrides("dcgan", "mnist_embedded", "eval=fid"))

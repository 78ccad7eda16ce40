"""Every file an evaluation loads, planted with a pickle that would run code.

Each test plants, where one load site reads, a file whose unpickling creates a marker
file (``open(marker, "w")``), runs the real ganrun code path offline, and requires that
the marker was not created and that the user got one clear line or a safe recompute.

| load site | who loads it | how it is made safe | test |
| --- | --- | --- | --- |
| cached real features, ``<cache>/fidelity/*-features-*.pt`` | torch-fidelity (``weights_only=False``) | ganrun reads them with ``weights_only=True`` as (n_real, d) tensors and hands torch-fidelity copies in a private folder | ``test_planted_real_statistics_*``, ``test_ganrun_eval_*``, ``test_ganrun_train_*`` |
| cached FID statistics, ``*-stat-fid-*.pt`` | torch-fidelity | never read: torch-fidelity's cache root is the private folder; the statistics are recomputed from the features | the same |
| Inception weights (checked at start, read at each evaluation) | torch-fidelity | copied into the private folder while hashed; the copy is what it reads | ``test_inception_weights_swapped_after_the_check_*`` |
| VGG-16 weights, ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` | torchvision via torch.hub (``weights_only=False``) | SHA-256 prefix checked, reloaded with ``weights_only=True``, saved again in the private folder | ``test_planted_vgg16_weights_*`` |
| CLIP weights, ``$TORCH_HOME/hub/checkpoints/clip-*-<sha256>.pt`` | torch-fidelity via torch.hub | full SHA-256 checked while copied into the private folder | ``test_planted_clip_weights_*`` |
| DINOv2, ``$TORCH_HOME/hub/facebookresearch_dinov2_main/`` (code) | torch.hub.load | refused: a hub repo is code ganrun cannot check | ``test_dinov2_hub_code_is_never_imported`` |
| checkpoints, fitted evaluators, DRS estimators | ganrun (``weights_only=True`` already) | unchanged; guarded here | ``test_ganrun_own_files_refuse_a_planted_pickle`` |
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ganrun.data.embedded import EmbeddedMNIST
from ganrun.errors import GanrunError
from ganrun.metrics import features, fidelity, weights
from tests.conftest import cli_error, run_train, tiny_overrides

# The reference of the tests' evaluations: the embedded digits' held-out split.
REF = fidelity.reference_of(
    {"_target_": "ganrun.data.embedded.EmbeddedMNIST", "resolution": 28, "channels": 1},
    "mnist_embedded",
    "test",
    (1, 28, 28),
)


def save_tiny_evaluator(root: Path, name: str = "mnist-classifier") -> Path:
    """An untrained (seeded) classifier: enough for the loading paths."""
    from ganrun.metrics import classifier as clf

    torch.manual_seed(0)
    model = clf.DigitClassifier(1, 10, 28, width=8, feature_dim=32)
    return clf.save_classifier(model, root / "evaluators" / f"{name}.pt", {"name": name})


class Plant:
    """Unpickling this creates ``marker``: what a crafted cache or weights file could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(Plant(marker), path)
    return path


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, Path]:
    """Empty ganrun cache and torch.hub dir, no network (a closed local proxy)."""
    paths = {"cache": tmp_path / "cache", "torch": tmp_path / "torch"}
    monkeypatch.setenv("GANRUN_CACHE", str(paths["cache"]))
    monkeypatch.setenv("TORCH_HOME", str(paths["torch"]))
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    for k in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(k, "http://127.0.0.1:9")
    paths["marker"] = tmp_path / "PWNED"
    paths["hub"] = paths["torch"] / "hub" / "checkpoints"
    return paths


def digits(split: str, n: int | None = None) -> torch.Tensor:
    x = EmbeddedMNIST(split=split).arrays()[0]
    return x if n is None else x[:n]


def real_side() -> fidelity.RealImages:
    return fidelity.RealImages(EmbeddedMNIST(split="test"), None, 0, rgb=False)


def assert_refused(excinfo, marker: Path, *needles: str) -> str:
    """The planted code did not run, and the user got one GanrunError line."""
    assert not marker.exists(), "the planted pickle ran"
    assert isinstance(excinfo.value, GanrunError), repr(excinfo.value)
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def no_staging_left(cache: Path) -> None:
    left = list((cache / "fidelity").glob(".staging-*")) if (cache / "fidelity").exists() else []
    assert not left, left


# --------------------------------------------------------------------------- the real-statistics cache
@pytest.mark.parametrize("kind", ["features", "stat-fid"])
@pytest.mark.parametrize("metrics", [{"fid"}, {"fid", "kid"}])
def test_planted_real_statistics_do_not_run(kind, metrics, env):
    """A pickle in either of torch-fidelity's cache files of the real side, planted before
    the first evaluation: today loaded with weights_only=False on the next one."""
    save_tiny_evaluator(env["cache"])
    feats = features.resolve_features("mnist-classifier")
    name = fidelity._cache_name(feats, REF, None, 0)
    layer = "penultimate"
    target = env["cache"] / "fidelity" / f"{name}-{feats.name}-{kind}-{layer}.pt"
    plant(target, env["marker"])
    fake = digits("train", 100)
    if kind == "features":
        with pytest.raises(Exception) as e:
            fidelity.fidelity_metrics(fake, real_side(), metrics, feats, ref=REF)
        msg = assert_refused(e, env["marker"], str(target), "delete it to recompute")
        assert msg.startswith(str(target))
    else:  # ganrun never hands torch-fidelity a statistics file: it is ignored
        scores, _ = fidelity.fidelity_metrics(fake, real_side(), metrics, feats, ref=REF)
        assert not env["marker"].exists(), "the planted pickle ran"
        clean, _ = fidelity.fidelity_metrics(
            fake, real_side(), metrics, feats, ref=None, cache_dir=str(env["cache"] / "other")
        )
        assert scores["fid[mnist-classifier]"] == pytest.approx(clean["fid[mnist-classifier]"])
    no_staging_left(env["cache"])


def test_planted_real_statistics_replacing_a_good_cache_are_refused(env):
    """The cache is filled by a first evaluation, then every file in it is replaced."""
    save_tiny_evaluator(env["cache"])
    feats = features.resolve_features("mnist-classifier")
    fake = digits("train", 100)
    first, _ = fidelity.fidelity_metrics(fake, real_side(), {"fid", "is"}, feats, ref=REF)
    cached = sorted((env["cache"] / "fidelity").glob("*.pt"))
    assert cached and all("-features-" in p.name for p in cached), cached
    # a second evaluation reads the cache (and gives the same scores)
    again, _ = fidelity.fidelity_metrics(fake, real_side(), {"fid", "is"}, feats, ref=REF)
    assert again == first
    for p in cached:
        plant(p, env["marker"])
    with pytest.raises(Exception) as e:
        fidelity.fidelity_metrics(fake, real_side(), {"fid", "is"}, feats, ref=REF)
    assert_refused(e, env["marker"], "delete it to recompute")
    # deleting it, as the message says, recomputes
    for p in cached:
        p.unlink()
    redo, _ = fidelity.fidelity_metrics(fake, real_side(), {"fid", "is"}, feats, ref=REF)
    assert redo == first and not env["marker"].exists()


@pytest.mark.parametrize(
    "content, reason",
    [
        (torch.zeros(3, 4), "3 rows"),  # a tensor of the wrong shape
        ({"penultimate": torch.zeros(500, 32)}, "not a tensor"),
        (b"truncated", "unreadable"),
    ],
)
def test_a_cached_file_that_is_not_the_features_is_refused(content, reason, env):
    save_tiny_evaluator(env["cache"])
    feats = features.resolve_features("mnist-classifier")
    name = fidelity._cache_name(feats, REF, None, 0)
    target = env["cache"] / "fidelity" / f"{name}-{feats.name}-features-penultimate.pt"
    target.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        torch.save(content, target)
    with pytest.raises(GanrunError, match="delete it to recompute") as e:
        fidelity.fidelity_metrics(digits("train", 50), real_side(), {"fid"}, feats, ref=REF)
    assert reason in str(e.value) and str(target) in str(e.value)


# --------------------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A tiny run trained with eval=offline (fid): its cache holds the real features."""
    root = tmp_path_factory.mktemp("unsafe")
    cache = root / "cache"
    save_tiny_evaluator(cache)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANRUN_CACHE", str(cache))
        mp.setenv("TORCH_HOME", str(root / "torch"))
        extra = ["eval=offline", "eval.metrics=[fid]", "eval.n=20", "eval.every=2"]
        run_train(
            root / "run",
            tiny_overrides("dcgan", "mnist_embedded", *extra, "logger.tensorboard=false"),
        )
    assert list((cache / "fidelity").glob("*-features-*.pt"))
    return {"run": root / "run", "cache": cache}


def poisoned_cache(trained, env) -> None:
    """A copy of the trained run's cache with every cached real-side file replaced."""
    shutil.copytree(trained["cache"], env["cache"])
    planted = list((env["cache"] / "fidelity").glob("*-features-*.pt"))
    for p in planted:  # both of torch-fidelity's kinds of cache file
        plant(p, env["marker"])
        plant(p.with_name(p.name.replace("-features-", "-stat-fid-")), env["marker"])
    assert planted


def test_ganrun_eval_refuses_planted_real_statistics(trained, env, tmp_path, capsys, monkeypatch):
    poisoned_cache(trained, env)
    monkeypatch.setattr(sys, "argv", ["ganrun"])
    monkeypatch.chdir(tmp_path)
    args = ["eval", f"ckpt={trained['run']}", "metrics=[fid]", "n=20", "features=mnist-classifier"]
    try:
        err = cli_error(args, capsys)
    finally:
        assert not env["marker"].exists(), "the planted pickle ran"
    assert err.startswith(f"ganrun: error: {env['cache'] / 'fidelity'}"), err
    assert "delete it to recompute" in err


def test_ganrun_train_eval_offline_refuses_planted_real_statistics(
    trained, env, tmp_path, capsys, monkeypatch
):
    poisoned_cache(trained, env)
    monkeypatch.setattr(sys, "argv", ["ganrun"])
    monkeypatch.chdir(tmp_path)
    extra = ["eval=offline", "eval.metrics=[fid]", "eval.n=20", "eval.every=2"]
    args = ["train", *tiny_overrides("dcgan", "mnist_embedded", *extra, "logger.tensorboard=false")]
    try:
        err = cli_error([*args, f"hydra.run.dir={tmp_path / 'run'}"], capsys)
    finally:
        assert not env["marker"].exists(), "the planted pickle ran"
    assert "delete it to recompute" in err


# --------------------------------------------------------------------------- Inception
class RecordingExtractor:
    """Stands in for a torch-fidelity extractor: keeps the bytes of the file it is given."""

    seen: list[tuple[str, bytes]] = []

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        RecordingExtractor.seen.append(
            (feature_extractor_weights_path, Path(feature_extractor_weights_path).read_bytes())
        )
        raise RuntimeError("recorded")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "logits_unbiased"


def test_inception_weights_swapped_after_the_check_are_refused(env, tmp_path, monkeypatch):
    """The weights are checked when an evaluation is prepared (the start of a training run)
    and read by torch-fidelity at each evaluation, maybe hours later: a file replaced in
    between was read with weights_only=False."""
    good = tmp_path / "inception.pth"
    good.write_bytes(b"stand-in for the Inception weights")
    monkeypatch.setattr(weights, "INCEPTION_SHA256", hashlib.sha256(good.read_bytes()).hexdigest())
    feats = features.resolve_features(features.INCEPTION, inception_weights=str(good))
    plant(good, env["marker"])
    with pytest.raises(Exception) as e:
        fidelity.fidelity_metrics(digits("train", 20), None, {"is"}, feats)
    assert_refused(e, env["marker"], str(good), "SHA-256")
    no_staging_left(env["cache"])


def test_torch_fidelity_reads_the_checked_bytes_of_the_inception_weights(
    env, tmp_path, monkeypatch
):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    good = tmp_path / "inception.pth"
    good.write_bytes(b"stand-in for the Inception weights")
    monkeypatch.setattr(weights, "INCEPTION_SHA256", hashlib.sha256(good.read_bytes()).hexdigest())
    feats = features.resolve_features(features.INCEPTION, inception_weights=str(good))
    monkeypatch.setitem(FEATURE_EXTRACTORS_REGISTRY, features.INCEPTION, RecordingExtractor)
    RecordingExtractor.seen.clear()
    with pytest.raises(RuntimeError, match="recorded"):
        fidelity.fidelity_metrics(digits("train", 20), None, {"is"}, feats)
    ((path, data),) = RecordingExtractor.seen
    assert data == good.read_bytes() and Path(path) != good
    assert not Path(path).exists()  # the private copy is gone afterwards
    no_staging_left(env["cache"])


def test_planted_inception_weights_in_the_hub_cache_are_refused(env):
    """Already safe before (the digest is checked first); guarded here."""
    plant(env["hub"] / weights.INCEPTION_FILE, env["marker"])
    with pytest.raises(Exception) as e:
        features.resolve_features(features.INCEPTION)
    assert_refused(e, env["marker"], weights.INCEPTION_SHA256)


# --------------------------------------------------------------------------- VGG-16 (torchvision)
class TinyVGG(nn.Module):
    """The shape of torchvision's VGG that torch-fidelity relies on (classifier[0..6])."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 8, stride=8), nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Sequential(
            nn.Linear(16, 8),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(8, 6),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(6, 5),
        )

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def vgg16_hub_file(env) -> Path:
    import torchvision

    return env["hub"] / Path(torchvision.models.VGG16_Weights.IMAGENET1K_V1.url).name


def test_planted_vgg16_weights_are_refused(env, monkeypatch):
    """features=vgg16: torchvision loads its hub cache file with weights_only=False."""
    target = plant(vgg16_hub_file(env), env["marker"])
    with pytest.raises(Exception) as e:
        feats = features.resolve_features("vgg16")
        fidelity.fidelity_metrics(digits("train", 20), None, {"is"}, feats)
    assert_refused(e, env["marker"], str(target))


def test_planted_vgg16_weights_matching_the_published_prefix_are_refused(env, monkeypatch):
    """torchvision publishes 8 hex digits of the file's SHA-256, few enough to match by
    search: such a file must still not run, because ganrun reloads it weights-only."""
    from ganrun.metrics import trusted

    target = plant(vgg16_hub_file(env), env["marker"])
    prefix = hashlib.sha256(target.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(trusted, "VGG16", dataclasses.replace(trusted.VGG16, sha256=prefix))
    feats = features.resolve_features("vgg16")
    with pytest.raises(Exception) as e:
        fidelity.fidelity_metrics(digits("train", 20), None, {"is"}, feats)
    assert_refused(e, env["marker"], str(target), "delete it")
    no_staging_left(env["cache"])


def test_vgg16_weights_reloaded_weights_only_give_torch_fidelitys_scores(env, monkeypatch):
    import torch_fidelity
    import torchvision

    from ganrun.metrics import trusted

    monkeypatch.setattr(torchvision.models, "vgg16", lambda *a, **k: TinyVGG())
    torch.manual_seed(0)
    target = vgg16_hub_file(env)
    target.parent.mkdir(parents=True)
    torch.save(TinyVGG().state_dict(), target)
    prefix = hashlib.sha256(target.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(trusted, "VGG16", dataclasses.replace(trusted.VGG16, sha256=prefix))
    feats = features.resolve_features("vgg16")
    x = digits("train", 20)
    ours, protocol = fidelity.fidelity_metrics(x, None, {"is"}, feats, isc_splits=2)
    direct = torch_fidelity.calculate_metrics(
        input1=fidelity.ImageTensors(x, rgb=True),
        isc=True,
        isc_splits=2,
        feature_extractor="vgg16",
        rng_seed=0,  # ganrun's eval.seed
        feature_extractor_weights_path=str(target),
        cuda=False,
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )
    assert ours["is[vgg16]"] == pytest.approx(direct["inception_score_mean"], rel=1e-9)
    assert protocol["weights_sha256"] == prefix


def test_vgg16_weights_missing_offline_give_one_line_and_no_partial_file(env):
    with pytest.raises(GanrunError, match="could not download") as e:
        features.resolve_features("vgg16")
    msg = str(e.value)
    assert "\n" not in msg and str(vgg16_hub_file(env)) in msg and "https://" in msg, msg
    assert not env["hub"].exists() or not any(env["hub"].iterdir())


# --------------------------------------------------------------------------- CLIP, DINOv2
def test_planted_clip_weights_are_refused(env):
    from torch_fidelity.feature_extractor_clip import MODEL_METADATA

    digest = MODEL_METADATA["clip-vit-b-32"]["hash"]
    target = plant(env["hub"] / f"clip-vit-b-32-{digest}.pt", env["marker"])
    with pytest.raises(Exception) as e:
        feats = features.resolve_features("clip-vit-b-32")
        fidelity.fidelity_metrics(digits("train", 20), None, {"is"}, feats)
    assert_refused(e, env["marker"], str(target), digest[:16])


def test_dinov2_hub_code_is_never_imported(env):
    """features=dinov2-*: torch.hub.load imports hubconf.py from $TORCH_HOME/hub."""
    repo = env["torch"] / "hub" / "facebookresearch_dinov2_main"
    repo.mkdir(parents=True)
    (repo / "hubconf.py").write_text(f"open({str(env['marker'])!r}, 'w')\n")
    with pytest.raises(Exception) as e:
        feats = features.resolve_features("dinov2-vit-s-14")
        fidelity.fidelity_metrics(digits("train", 20), None, {"is"}, feats)
    assert_refused(e, env["marker"], "dinov2-vit-s-14")


# --------------------------------------------------------------------------- ganrun's own files
def test_ganrun_own_files_refuse_a_planted_pickle(env, tmp_path):
    """Checkpoints, fitted evaluators and DRS estimators were already read weights-only."""
    from ganrun import checkpoint as ckpt
    from ganrun import rejection
    from ganrun.metrics import classifier as clf

    evaluator = plant(features.evaluator_path("mnist-classifier"), env["marker"])
    with pytest.raises(Exception) as e:
        features.resolve_features("mnist-classifier")
    assert_refused(e, env["marker"], str(evaluator))
    with pytest.raises(Exception) as e:
        clf.load_classifier(evaluator)
    assert_refused(e, env["marker"])
    with pytest.raises(Exception) as e:
        ckpt.load_file(plant(tmp_path / "run" / "checkpoints" / "step-00000002.pt", env["marker"]))
    assert_refused(e, env["marker"])
    with pytest.raises(Exception) as e:
        rejection.load_estimator(plant(tmp_path / "est.pt", env["marker"]), nn.Linear(2, 1))
    assert_refused(e, env["marker"])


def test_staging_folders_of_killed_processes_are_removed(env):
    """A kill during an evaluation leaves its private folder; the next one on this host
    removes it, and keeps those of live processes and of other hosts (a shared cache)."""
    import socket
    import subprocess

    from ganrun.metrics import trusted

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()
    base = env["cache"] / "fidelity"
    left = {
        "dead": base / f"{trusted.STAGING}{int(dead.stdout)}@{host}-abc",
        "alive": base / f"{trusted.STAGING}{os.getppid()}@{host}-def",
        "elsewhere": base / f"{trusted.STAGING}{int(dead.stdout)}@not-{host}-ghi",
    }
    for p in left.values():
        p.mkdir(parents=True)
        (p / "features.pt").write_bytes(b"x" * 10)
    save_tiny_evaluator(env["cache"])
    feats = features.resolve_features("mnist-classifier")
    fidelity.fidelity_metrics(digits("train", 20), real_side(), {"fid"}, feats, ref=REF)
    assert not left["dead"].exists() and left["alive"].exists() and left["elsewhere"].exists()
    assert sorted(base.glob(f"{trusted.STAGING}*")) == sorted([left["alive"], left["elsewhere"]])

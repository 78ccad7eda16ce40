"""Mode-coverage metrics, stacked MNIST and PacGAN packing."""

from __future__ import annotations

import math

import pytest
import torch

from ganrun.build import build, build_dataset
from ganrun.data.stacked import N_MODES, StackedMNIST, mode_index
from ganrun.data.toy import Grid, Ring
from ganrun.errors import ConfigError
from ganrun.metrics import modes
from ganrun.models import dcgan, vanilla
from ganrun.models.packing import pack_samples
from tests.conftest import compose_config, run_train, tiny_overrides

# P(|x - mu| < 3 sigma) for an isotropic 2-D Gaussian: chi-square(2) CDF at 9
IN_3_SIGMA_2D = 1 - math.exp(-4.5)


# --------------------------------------------------------------------------- 2-D mixtures
@pytest.mark.parametrize("data", [Ring(), Grid()], ids=["ring", "grid"])
def test_perfect_sampler_covers_every_mode(data):
    g = torch.Generator().manual_seed(0)
    points, _ = data.sample(modes.POINT_SAMPLES, g)
    m = modes.mode_metrics(points, data)
    k = data.n_modes
    assert m["modes"] == modes.n_modes(data) == k
    # binomial standard deviation of the share over 2,500 points is ~0.002
    assert abs(m["high_quality"] - IN_3_SIGMA_2D) < 0.01
    # a multinomial sample of the uniform histogram: E[KL] ~ (K - 1) / (2N)
    assert 0 <= m["reverse_kl"] < 5 * (k - 1) / (2 * modes.POINT_SAMPLES)


@pytest.mark.parametrize("data", [Ring(), Grid()], ids=["ring", "grid"])
def test_collapsed_sampler_has_one_mode_and_kl_log_k(data):
    g = torch.Generator().manual_seed(0)
    points = data.centers[3] + data.std * 0.5 * torch.randn(modes.POINT_SAMPLES, 2, generator=g)
    m = modes.mode_metrics(points, data)
    assert m["modes"] == 1
    assert m["high_quality"] == 1.0  # noise of 0.5 sigma: all within 3 sigma of mode 3
    assert m["reverse_kl"] == pytest.approx(math.log(data.n_modes), abs=1e-12)


def test_known_histograms_and_the_3_sigma_rule():
    ring = Ring()
    s = ring.std
    c0, c1 = ring.centers[0], ring.centers[1]
    off = torch.tensor([1.0, 0.0]) * s
    # 2 points at 2.9 sigma of mode 0, one at 3.1 sigma of mode 0, one exactly on mode 1,
    # one at the origin (1 / 0.01 = 100 sigma from every centre)
    points = torch.stack([c0 + 2.9 * off, c0 - 2.9 * off, c0 + 3.1 * off, c1, torch.zeros(2)])
    m = modes.mode_metrics(points, ring)
    assert m["modes"] == 2
    assert m["high_quality"] == pytest.approx(3 / 5)
    # histogram (2, 1, 0, ..., 0) over 8 modes: sum p log(8 p)
    p = torch.tensor([2 / 3, 1 / 3], dtype=torch.float64)
    assert m["reverse_kl"] == pytest.approx(float((p * torch.log(8 * p)).sum()), abs=1e-12)


def test_no_high_quality_point_gives_zero_modes_and_infinite_kl():
    m = modes.mode_metrics(torch.full((10, 2), 50.0), Grid())
    assert m["modes"] == 0 and m["high_quality"] == 0.0
    assert m["reverse_kl"] == math.inf


def test_kl_to_uniform_exact_values():
    assert modes.kl_to_uniform(torch.tensor([5, 5, 5, 5])) == 0.0
    assert modes.kl_to_uniform(torch.tensor([1, 1, 0, 0])) == pytest.approx(math.log(2))
    assert modes.kl_to_uniform(torch.tensor([7, 0, 0])) == pytest.approx(math.log(3))


# --------------------------------------------------------------------------- stacked MNIST
LEVELS = torch.linspace(-0.9, 0.9, 10)


def synthetic_stacked(digits: torch.Tensor, side: int = 28) -> torch.Tensor:
    """Flat images whose channel value encodes a digit (levels in [-0.9, 0.9])."""
    return LEVELS[digits].view(-1, 3, 1, 1).expand(-1, 3, side, side).clone()


def level_classifier(x: torch.Tensor) -> torch.Tensor:
    """A stand-in for the MNIST classifier: reads the digit from the mean level."""
    assert x.shape[1:] == (1, 28, 28)
    return -((x.mean(dim=(1, 2, 3))[:, None] - LEVELS[None, :]) ** 2)


def all_triples() -> torch.Tensor:
    t = torch.arange(N_MODES)
    return torch.stack([t // 100, t // 10 % 10, t % 10], dim=1)


def test_stacked_metric_perfect_uniform_and_collapsed():
    data = StackedMNIST()
    every = all_triples().repeat(26, 1)  # 26,000 samples, each triple 26 times
    m = modes.mode_metrics(synthetic_stacked(every), data, level_classifier)
    assert m == {"modes": 1000.0, "kl": 0.0}

    g = torch.Generator().manual_seed(0)
    random = torch.randint(0, 10, (modes.STACKED_SAMPLES, 3), generator=g)
    m = modes.mode_metrics(synthetic_stacked(random), data, level_classifier)
    assert m["modes"] == 1000  # P(any of 1,000 modes missing) ~ 1000 e^-26
    assert 0 < m["kl"] < 0.05  # E[KL] ~ 999 / (2 * 26,000) = 0.019

    one = torch.tensor([[4, 0, 7]]).repeat(500, 1)
    m = modes.mode_metrics(synthetic_stacked(one), data, level_classifier)
    assert m["modes"] == 1
    assert m["kl"] == pytest.approx(math.log(1000), abs=1e-12)


def test_stacked_metric_reads_channels_in_rgb_order_and_resizes():
    digits = torch.tensor([[1, 2, 3], [9, 0, 5]])
    got = modes.classify_channels(synthetic_stacked(digits, side=32), level_classifier)
    assert torch.equal(got, digits)
    assert mode_index(got).tolist() == [123, 905]


def test_stacked_metric_needs_a_classifier_and_modes_need_known_modes():
    with pytest.raises(ConfigError, match="fit-evaluator"):
        modes.mode_metrics(torch.zeros(2, 3, 28, 28), StackedMNIST())
    mnist = build_dataset(compose_config(["dataset=mnist_embedded"]))
    with pytest.raises(ConfigError, match="ring, grid or stacked_mnist"):
        modes.mode_metrics(torch.zeros(2, 1, 28, 28), mnist)


def test_stacked_mnist_shapes_labels_and_all_modes_reachable():
    data = build_dataset(compose_config(["dataset=stacked_mnist"]))
    assert isinstance(data, StackedMNIST)
    assert data.data_shape == (3, 28, 28) and data.num_classes == 0
    x, y = next(data.batches(16, seed=0))
    assert x.shape == (16, 3, 28, 28) and y is None
    assert x.min() >= -1 and x.max() <= 1

    g = torch.Generator().manual_seed(0)
    images, mode = data.sample(20000, g)
    assert mode.unique().numel() == N_MODES  # every triple appears
    # each channel is an embedded digit of the labelled class
    digits, labels = data.digits()
    ref = (digits.float() / 127.5 - 1).flatten(1)
    for i in range(3):
        for ch, d in enumerate((mode[i] // 100, mode[i] // 10 % 10, mode[i] % 10)):
            match = (ref == images[i, ch].flatten()).all(dim=1)
            assert match.any() and labels[match][0] == d


def test_stacked_mnist_is_deterministic_per_seed_and_batch():
    data = StackedMNIST(labels=True)
    assert data.num_classes == N_MODES
    a = data.batches(8, seed=3)
    first = [next(a) for _ in range(3)]
    again = next(data.batches(8, seed=3, start=2))  # resume at batch 2
    assert torch.equal(first[2][0], again[0]) and torch.equal(first[2][1], again[1])
    other = next(data.batches(8, seed=4))
    assert not torch.equal(first[0][0], other[0])
    assert first[0][1].min() >= 0 and first[0][1].max() < N_MODES


# --------------------------------------------------------------------------- packing
def test_pack_samples_groups_consecutive_samples():
    x = torch.arange(4 * 2 * 3).view(4, 2, 3)  # 4 samples of 2 channels
    p = pack_samples(x, 2)
    assert p.shape == (2, 4, 3)
    assert torch.equal(p[1], torch.cat([x[2], x[3]]))
    with pytest.raises(ConfigError, match="divisible by 3"):
        pack_samples(x, 3)


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda s, m: dcgan.Discriminator(s, width=8, pack=m), (3, 28, 28)),
        (lambda s, m: dcgan.Discriminator(s, width=8, pack=m), (2,)),
        (lambda s, m: vanilla.Discriminator(s, width=40, pack=m), (1, 28, 28)),
        (lambda s, m: vanilla.Discriminator(s, width=40, pack=m), (2,)),
    ],
    ids=["dcgan-images", "dcgan-points", "vanilla-images", "vanilla-points"],
)
def test_packed_discriminator_shapes(make, shape):
    x = torch.randn(12, *shape)
    for m in (1, 2, 4):
        D = make(shape, m)
        logits, features = D.forward_features(x)
        assert logits.shape == (12 // m,) and features.shape[0] == 12 // m
        assert D(x).shape == (12 // m,)
    with pytest.raises(ConfigError, match="trainer.batch_size to a multiple of 4"):
        make(shape, 4)(torch.randn(10, *shape))
    with pytest.raises(ConfigError, match="pack must be >= 1"):
        make(shape, 0)


def test_packed_d_sees_the_pack_jointly():
    """One packed logit depends on every sample of its pack and on no other."""
    torch.manual_seed(0)
    D = vanilla.Discriminator((2,), width=40, pack=2, dropout_input=0.0, dropout_hidden=0.0)
    x = torch.randn(4, 2)
    base = D(x)
    y = x.clone()
    y[1] += 1.0  # second sample of the first pack
    out = D(y)
    assert out[0] != base[0] and out[1] == base[1]


@pytest.mark.parametrize(
    "model,dataset,extra",
    [
        ("dcgan", "stacked_mnist", ["model.D.pack=2"]),
        ("vanilla", "ring", ["model.D.pack=4"]),
        ("pacgan_mlp", "grid", ["model.pack=2", "trainer.batch_size=16"]),
    ],
)
def test_packed_training_runs(tmp_path, model, dataset, extra):
    overrides = [*tiny_overrides(model, dataset, "logger.tensorboard=false"), *extra]
    built = build(compose_config(overrides))
    before = [p.detach().clone() for p in built.D.parameters()]
    _, result = run_train(tmp_path, overrides)
    assert math.isfinite(result["loss/d"]) and math.isfinite(result["loss/g"])
    from ganrun import checkpoint as ckpt

    _, state = ckpt.load(tmp_path)
    after = list(state["models"]["D"].values())
    assert any(not torch.equal(b, a) for b, a in zip(before, after) if b.shape == a.shape)


def test_indivisible_batch_is_one_clear_error(tmp_path):
    overrides = tiny_overrides("dcgan", "ring", "model.D.pack=3", "logger.tensorboard=false")
    with pytest.raises(ConfigError, match="model.D.pack=3 needs a batch divisible by 3"):
        run_train(tmp_path, overrides)


# --------------------------------------------------------------------------- recipe and generation
def test_pacgan_mlp_recipe_builds_the_papers_networks():
    cfg = compose_config(["model=pacgan_mlp", "dataset=ring", "trainer.device=cpu"])
    assert cfg.trainer.batch_size == 400 and cfg.model.D.pack == 4
    assert cfg.optimizer.lr_g == cfg.optimizer.lr_d == 1e-4
    assert list(cfg.optimizer.betas) == [0.8, 0.999]
    b = build(cfg)
    linears = [m for m in b.G.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (2, 400), (400, 400), (400, 400), (400, 400), (400, 2)
    ]  # fmt: skip
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in b.G.modules()) == 4
    maxouts = [m for m in b.D.modules() if isinstance(m, vanilla.Maxout)]
    assert [(m.linear.in_features, m.units, m.pieces) for m in maxouts] == [
        (8, 200, 5), (200, 200, 5), (200, 200, 5)
    ]  # fmt: skip
    assert not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in b.D.modules())


def test_evaluate_generator_is_repeatable_and_leaves_state_alone():
    data = Ring()
    G = vanilla.Generator((2,), z_dim=2, width=16, depth=2, batch_norm=True, init_std=0.02)
    G.train()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = modes.evaluate_generator(G, data, n=300, seed=5)
    assert torch.equal(torch.rand(1), expected_next)  # global RNG untouched
    assert G.training
    b = modes.evaluate_generator(G, data, n=300, seed=5)
    assert a == b and set(a) == {"modes", "high_quality", "reverse_kl"}
    assert modes.protocol_samples(data) == 2500
    assert modes.protocol_samples(StackedMNIST()) == 26000
    assert modes.n_modes(StackedMNIST()) == 1000


# --------------------------------------------------------------------------- through eval=modes
def test_eval_modes_during_training_on_ring(tmp_path):
    overrides = tiny_overrides(
        "vanilla", "ring", "eval=modes", "eval.every=2", "logger.tensorboard=false"
    )
    _, result = run_train(tmp_path, overrides)
    assert 0 <= result["eval/modes"] <= 8 and 0 <= result["eval/high_quality"] <= 1
    assert "eval/reverse_kl" in result
    records = _metric_records(tmp_path)
    assert [r["step"] for r in records] == [2, 3]
    assert records[-1]["protocol"]["modes"]["n_generated"] == modes.POINT_SAMPLES


def test_metrics_jsonl_kimg_counts_the_critic_warmup(tmp_path):
    """kimg in metrics.jsonl is what D has seen: boosted D steps count (3 + 3, then 1 each)."""
    warmup = ["trainer.n_critic=1", "trainer.n_critic_warmup=3", "trainer.n_critic_warmup_steps=2"]
    overrides = tiny_overrides(
        "vanilla", "ring", "eval=modes", "eval.every=2", "logger.tensorboard=false", *warmup
    )
    overrides = [o for o in overrides if not o.startswith("trainer.steps=")] + ["trainer.steps=4"]
    run_train(tmp_path, overrides)
    batch = compose_config(overrides).trainer.batch_size
    records = _metric_records(tmp_path)
    assert [(r["step"], r["kimg"]) for r in records] == [
        (2, 6 * batch / 1000.0),
        (4, 8 * batch / 1000.0),
    ]


def test_eval_modes_on_stacked_mnist_with_a_classifier_file(tmp_path):
    from ganrun.metrics.classifier import DigitClassifier, save_classifier

    torch.manual_seed(0)
    path = save_classifier(DigitClassifier(width=4, feature_dim=8).eval(), tmp_path / "clf.pt")
    overrides = tiny_overrides(
        "dcgan",
        "stacked_mnist",
        "eval=modes",
        "eval.every=3",
        "eval.n_modes=64",
        f"eval.classifier={path}",
        "model.D.pack=2",
        "logger.tensorboard=false",
    )
    _, result = run_train(tmp_path / "run", overrides)
    assert 1 <= result["eval/clf/modes"] <= 64 and result["eval/clf/kl"] >= 0
    (record,) = _metric_records(tmp_path / "run")
    assert set(record["scores"]) == {"modes[clf]", "kl[clf]"}


def _metric_records(run_dir):
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]

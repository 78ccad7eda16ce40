"""SAGAN, BigGAN and StyleGAN: their building blocks (cases with known answers),
shapes at every supported resolution, the recipes, and a few steps through the
real training loop with checkpoint, resume and sampling."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from ganrun import checkpoint as ckpt
from ganrun.build import validate
from ganrun.commands.sample import load_generator, sample
from ganrun.errors import ConfigError
from ganrun.models import biggan, layers, sagan, stylegan
from tests.conftest import TINY_TRAINER, assert_resume_is_exact, compose_config, run_train

FAKE = ["dataset=fake", "dataset.size=64", "dataset.resolution=32"]
LABELLED = [*FAKE, "dataset.num_classes=10"]
TINY = {
    "sagan": ["model.width=2", "model.z_dim=16"],
    "biggan": ["model.width=2", "model.z_dim=16", "model.shared_dim=8"],
    "stylegan": ["model.width=8", "model.z_dim=16", "model.w_dim=16", "model.mapping_layers=2"],
}


def tiny(model: str, *extra: str, data=LABELLED) -> list[str]:
    return [
        f"model={model}",
        *data,
        *TINY[model],
        *TINY_TRAINER,
        "trainer.batch_size=4",
        "logger.tensorboard=false",
        *extra,
    ]


def _resolved(overrides) -> dict:
    return OmegaConf.to_container(compose_config(overrides), resolve=True)


# --------------------------------------------------------------------------- building blocks
def test_self_attention_with_gamma_zero_is_the_identity():
    torch.manual_seed(0)
    att = layers.SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert float(att.gamma.detach()) == 0.0  # the paper's initialisation
    assert torch.equal(att(x), x)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    assert not torch.allclose(att(x), x)  # the block is live once gamma moves


def test_adain_output_has_the_style_mean_and_std():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, 8) * 4.0 + 2.5
    scale, bias = torch.rand(3, 5) + 0.5, torch.randn(3, 5)
    y = stylegan.adain(x, scale, bias)
    mean = y.mean(dim=(2, 3))
    std = y.var(dim=(2, 3), unbiased=False).sqrt()
    assert torch.allclose(mean, bias, atol=1e-5)
    assert torch.allclose(std, scale, atol=1e-4)


def test_equalized_lr_scales_the_stored_weight_by_he_constant():
    conv = stylegan.EqualConv2d(4, 6, 3)
    he = math.sqrt(2.0) / math.sqrt(4 * 3 * 3)
    assert torch.equal(conv.effective_weight(), conv.weight * he)
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * he, conv.bias, padding=1))
    lin = stylegan.EqualLinear(64, 32, lr_mul=0.01)  # the mapping network's layers
    assert torch.allclose(lin.effective_weight(), lin.weight * math.sqrt(2.0 / 64) * 0.01)
    assert 50 < float(lin.weight.detach().std()) < 200  # stored N(0, 1 / lr_mul^2): 100
    rgb = stylegan.EqualConv2d(8, 3, 1, gain=1.0)
    assert torch.allclose(rgb.effective_weight(), rgb.weight / math.sqrt(8))


def test_mapping_network_shape():
    f = stylegan.MappingNetwork(16, 24, layers=8)
    assert len(f.layers) == 8
    assert f(torch.randn(5, 16)).shape == (5, 24)
    G = stylegan.Generator((3, 32, 32), z_dim=16, w_dim=24, width=8, mapping_layers=3)
    assert G.mapping(G.sample_z(4)).shape == (4, 24) and G.num_ws == 8


def test_w_truncation_psi_zero_gives_w_avg_and_psi_one_leaves_w():
    w, w_avg = torch.randn(4, 8), torch.randn(8)
    assert torch.allclose(stylegan.truncate_w(w, w_avg, 0.0), w_avg.expand(4, 8))
    assert torch.equal(stylegan.truncate_w(w, w_avg, 1.0), w)
    G = stylegan.Generator((3, 32, 32), z_dim=8, w_dim=8, width=8, truncation_cutoff=None)
    G.w_avg.normal_()
    G.eval()
    a, b = (
        G(G.sample_z(1), truncation=0.0, noise="const"),
        G(G.sample_z(1), truncation=0.0, noise="const"),
    )
    assert torch.allclose(a, b)  # every z maps to w_avg
    ws = torch.randn(2, G.num_ws, 8)
    G.truncation_cutoff = 3  # the reference code truncates only the first layers
    t = G.truncate(ws, 0.0)
    assert torch.allclose(t[:, :3], G.w_avg.expand(2, 3, 8)) and torch.equal(t[:, 3:], ws[:, 3:])


def test_w_avg_is_a_moving_average_in_training_mode_only():
    G = stylegan.Generator((3, 32, 32), z_dim=8, w_dim=8, width=8, w_avg_beta=0.9)
    z = G.sample_z(4)
    w = G.mapping(z).detach()
    G(z)
    assert torch.allclose(G.w_avg, 0.1 * w.mean(0), atol=1e-6)
    assert "w_avg" in G.state_dict()
    G.eval()
    before = G.w_avg.clone()
    G(z)
    assert torch.equal(G.w_avg, before)
    with pytest.raises(ConfigError, match="truncates in W"):
        G.sample_z(2, truncation=0.7)


def test_style_mixing_happens_in_training_mode():
    G = stylegan.Generator((3, 32, 32), z_dim=8, w_dim=8, width=8, style_mixing_prob=1.0)
    seen = []
    G.synthesis.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    torch.manual_seed(0)
    G(G.sample_z(3))
    ws = seen[-1]
    assert not torch.allclose(ws[:, 0], ws[:, -1])  # two w's, switched at a crossover layer
    cut = next(i for i in range(1, G.num_ws) if not torch.allclose(ws[:, i], ws[:, 0]))
    assert all(torch.allclose(ws[:, i], ws[:, cut]) for i in range(cut, G.num_ws))
    G.eval()
    G(G.sample_z(3))
    ws = seen[-1]
    assert all(torch.allclose(ws[:, i], ws[:, 0]) for i in range(G.num_ws))


def test_minibatch_stddev_known_answer():
    # 4 samples with constant maps a_n; groups of 2 pair sample n with n + 2
    a = torch.tensor([0.0, 1.0, 4.0, 7.0])
    x = a.view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    y = stylegan.minibatch_stddev(x, group_size=2)
    assert y.shape == (4, 4, 2, 2) and torch.equal(y[:, :3], x)
    expect = torch.tensor([2.0, 3.0, 2.0, 3.0])  # |a_n - a_{n+2}| / 2
    assert torch.allclose(y[:, 3, 0, 0], expect, atol=1e-3)
    assert stylegan.minibatch_stddev(torch.randn(3, 2, 4, 4), group_size=4).shape == (3, 3, 4, 4)


def test_biggan_z_chunks_and_shared_embedding():
    G = biggan.Generator((3, 32, 32), num_classes=10, z_dim=16, width=2, shared_dim=6)
    assert G.chunk_sizes == [4, 4, 4, 4]  # input layer + 3 blocks
    assert sum(isinstance(m, torch.nn.Embedding) for m in G.modules()) == 1  # one shared table
    got = {}
    G.linear.register_forward_pre_hook(lambda m, args: got.__setitem__("linear", args[0]))
    blocks = [b for b in G.blocks if isinstance(b, layers.GBlock)]
    for k, b in enumerate(blocks):
        b.register_forward_pre_hook(lambda m, args, k=k: got.__setitem__(k, args[1]))
    z, c = G.sample_z(5), torch.randint(0, 10, (5,))
    G(z, c)
    e = G.shared(c)
    assert torch.equal(got["linear"], z[:, :4])
    for k in range(3):
        assert torch.equal(got[k], torch.cat([e, z[:, 4 * (k + 1) : 4 * (k + 2)]], dim=1))
        assert blocks[k].bn1.cond_dim == 6 + 4
    assert biggan.chunk_sizes(12, 5) == [3, 3, 2, 2, 2] and biggan.chunk_sizes(128, 4) == [32] * 4


def test_projection_discriminator_logit_depends_on_the_label():
    torch.manual_seed(0)
    for D in (
        biggan.Discriminator((3, 32, 32), num_classes=10, width=2),
        sagan.Discriminator((3, 32, 32), num_classes=10, width=2),
    ):
        D.eval()  # no power-iteration update between the calls
        x = torch.randn(4, 3, 32, 32)
        c1, c2 = torch.zeros(4, dtype=torch.long), torch.full((4,), 7)
        (l1, phi), l2 = D.forward_features(x, c1), D(x, c2)
        assert not torch.allclose(l1, l2)
        # only the projection term <embed(y), phi(x)> differs
        assert torch.allclose(l1 - l2, ((D.embed(c1) - D.embed(c2)) * phi).sum(1), atol=1e-4)
    uncond = sagan.Discriminator((3, 32, 32), num_classes=0, width=2)
    assert uncond.embed is None and uncond(torch.randn(2, 3, 32, 32)).shape == (2,)


def test_biggan_truncation_bounds_z():
    G = biggan.Generator((3, 32, 32), num_classes=10, z_dim=16, width=2, shared_dim=4)
    z = G.sample_z(2000, generator=torch.Generator().manual_seed(0), truncation=0.5)
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # resampled, not clipped to the bound
    assert G.TRUNCATION_SPACE == "z"


def test_attention_resolution_and_placement():
    G = sagan.Generator((3, 64, 64), width=2)
    D = sagan.Discriminator((3, 64, 64), width=2)
    assert G.attention_res == D.attention_res == 32  # default: half the image side
    sides, side = [], 4
    for b in G.blocks:
        if isinstance(b, layers.GBlock):
            side *= 2
        else:
            sides.append(side)
    assert sides == [32]
    assert sum(isinstance(m, layers.SelfAttention) for m in D.modules()) == 1
    assert not any(
        isinstance(m, layers.SelfAttention)
        for m in sagan.Generator((3, 32, 32), width=2, attention=False).modules()
    )
    with pytest.raises(ConfigError, match="attention_res=4 .* choose from 8, 16"):
        sagan.Generator((3, 32, 32), width=2, attention_res=4)


# --------------------------------------------------------------------------- shapes
def _nets(name, res, nc):
    shape = (3, res, res)
    if name == "sagan":
        return sagan.Generator(shape, nc, 16, 2), sagan.Discriminator(shape, nc, 2)
    if name == "biggan":
        return biggan.Generator(shape, nc, 16, 2, 4), biggan.Discriminator(shape, nc, 2)
    return (
        stylegan.Generator(shape, 8, 8, 8, mapping_layers=2),
        stylegan.Discriminator(shape, 8),
    )


@pytest.mark.parametrize(
    "name,res,nc",
    [
        ("sagan", 32, 0),
        ("sagan", 32, 10),
        ("sagan", 64, 10),
        ("biggan", 32, 10),
        ("biggan", 64, 10),
        ("stylegan", 32, 0),
        ("stylegan", 64, 0),
        ("stylegan", 128, 0),
    ],
)
def test_output_shapes(name, res, nc):
    G, D = _nets(name, res, nc)
    z = G.sample_z(4)
    c = torch.randint(0, nc, (4,)) if nc else None
    x = G(z, c)
    assert x.shape == (4, 3, res, res)
    logits, feats = D.forward_features(x, c)
    assert logits.shape == (4,) and feats.dim() == 2 and feats.shape[0] == 4
    G.eval()
    assert G(z, c).abs().max() <= 1.0


def test_unsupported_data_is_refused():
    with pytest.raises(ConfigError, match="needs a labelled dataset"):
        biggan.Generator((3, 32, 32), num_classes=0)
    with pytest.raises(ConfigError, match=r"\{32, 64\}"):
        sagan.Discriminator((3, 28, 28))
    with pytest.raises(ConfigError, match="needs image data"):
        stylegan.Generator((2,))


# --------------------------------------------------------------------------- recipes
def test_recipes_compose_the_papers_settings():
    sa = _resolved(["model=sagan", *LABELLED])
    assert sa["loss"]["_target_"] == "ganrun.losses.Hinge" and sa["regularizer"] == {}
    assert sa["optimizer"]["_target_"] == "ganrun.optim.TTUR"
    assert (sa["optimizer"]["lr_g"], sa["optimizer"]["lr_d"]) == (1e-4, 4e-4)
    assert sa["optimizer"]["betas"] == [0.0, 0.9]
    assert (sa["trainer"]["n_critic"], sa["trainer"]["batch_size"]) == (1, 256)
    assert sa["model"]["G"]["spectral_norm"] and sa["model"]["D"]["spectral_norm"]
    assert sa["trainer"]["ema_decay"] is None

    bg = _resolved(["model=biggan", *LABELLED])
    assert bg["loss"]["_target_"] == "ganrun.losses.Hinge"
    # 5e-5 in Eq. 3 = the authors' code's G_ortho 1e-4 (tests/test_regularizers.py)
    assert list(bg["regularizer"]) == ["ortho"] and bg["regularizer"]["ortho"]["weight"] == 5e-5
    assert bg["optimizer"]["_target_"] == "ganrun.optim.Adam"
    assert (bg["optimizer"]["lr_g"], bg["optimizer"]["lr_d"]) == (2e-4, 2e-4)
    assert bg["optimizer"]["betas"] == [0.0, 0.999]
    t = bg["trainer"]
    assert (t["n_critic"], t["batch_size"], t["ema_decay"], t["ema_start"]) == (4, 50, 0.9999, 1000)
    assert (bg["model"]["z_dim"], bg["model"]["width"], bg["model"]["shared_dim"]) == (128, 64, 128)

    sg = _resolved(["model=stylegan", *FAKE])
    assert sg["loss"]["_target_"] == "ganrun.losses.NonSaturating"
    assert list(sg["regularizer"]) == ["r1"] and sg["regularizer"]["r1"]["gamma"] == 10.0
    o = sg["optimizer"]
    assert (o["lr_g"], o["lr_d"], o["betas"], o["eps"]) == (1e-3, 1e-3, [0.0, 0.99], 1e-8)
    t = sg["trainer"]
    assert (t["n_critic"], t["batch_size"], t["ema_halflife_kimg"]) == (1, 32, 10.0)
    m = sg["model"]["G"]
    assert (m["mapping_layers"], m["mapping_lr_mul"], m["style_mixing_prob"]) == (8, 0.01, 0.9)
    assert (m["z_dim"], m["w_dim"], m["width"]) == (512, 512, 512)


def test_command_line_groups_win_over_the_recipes():
    cfg = _resolved(["model=biggan", "optimizer=ttur", "regularizer=[]", "loss=nonsaturating"])
    assert cfg["optimizer"]["_target_"] == "ganrun.optim.TTUR"
    assert cfg["optimizer"]["betas"] == [0.0, 0.999]  # BigGAN's values, given for TTUR too
    assert cfg["regularizer"] == {} and cfg["loss"]["_target_"] == "ganrun.losses.NonSaturating"
    cfg = _resolved(["model=stylegan", "optimizer=sgd"])
    assert cfg["optimizer"]["_target_"] == "ganrun.optim.SGD" and "betas" not in cfg["optimizer"]


def test_biggan_on_unlabelled_data_is_one_clear_error(tmp_path):
    cfg = compose_config(
        ["model=biggan", "dataset=mnist_embedded", "dataset.labels=false", "dataset.resolution=32"]
    )
    with pytest.raises(ConfigError, match="class-conditional and needs a labelled dataset"):
        validate(cfg)
    exe = shutil.which("ganrun", path=str(Path(sys.executable).parent)) or "ganrun"
    r = subprocess.run(
        [exe, "train", "model=biggan", "dataset=mnist_embedded", "dataset.labels=false",
         "dataset.resolution=32", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "needs a labelled dataset" in lines[0] and lines[0].startswith("ganrun: error:")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- the real loop
RUNS = {
    "sagan": tiny("sagan"),
    "sagan_uncond": tiny("sagan", data=FAKE),
    "biggan": tiny("biggan", "trainer.ema_start=1"),
    "stylegan": tiny("stylegan", data=FAKE),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache: dict[str, Path] = {}

    def get(key: str) -> Path:
        if key not in cache:
            run_dir = tmp_path_factory.mktemp(key)
            run_train(run_dir, RUNS[key])
            cache[key] = run_dir
        return cache[key]

    return get


def _sample_cfg(*overrides):
    return compose_config(["device=cpu", *overrides], config_name="sample")


@pytest.mark.parametrize("key", list(RUNS))
def test_trains_checkpoints_resumes_and_samples(key, trained, tmp_path):
    run_dir = trained(key)
    _, state = ckpt.load(run_dir)
    assert state["step"] == 3
    assert all(
        torch.isfinite(v).all() for v in state["models"]["G"].values() if v.is_floating_point()
    )
    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    _, result = run_train(resumed, [*RUNS[key], "trainer.steps=4", f"resume={resumed}"])
    assert ckpt.load(resumed)[1]["step"] == 4
    assert all(math.isfinite(v) for k, v in result.items() if k.startswith(("loss/", "reg/")))
    out = tmp_path / "grid.png"
    sample(_sample_cfg(f"ckpt={run_dir}", "n=4", "nrow=2", "truncation=0.7", f"out={out}"), out)
    assert Image.open(out).size[0] > 0


def test_biggan_run_uses_its_recipe(trained):
    _, state = ckpt.load(trained("biggan"))
    assert set(state["models"]) == {"G", "D", "G_ema"}
    g, e = state["models"]["G"], state["models"]["G_ema"]
    assert any(not torch.equal(g[k], e[k]) for k in g)  # averaged from step 1 on
    assert state["config"]["trainer"]["n_critic"] == 4
    assert list(state["config"]["regularizer"]) == ["ortho"]


@pytest.mark.parametrize("key", ["biggan", "stylegan"])
def test_resume_gives_exactly_the_uninterrupted_weights(key, tmp_path):
    # StyleGAN draws mixing and noise from the global RNG and keeps w_avg; BigGAN has
    # spectral-norm vectors and an EMA that starts mid-run
    assert_resume_is_exact(tmp_path, [*RUNS[key], "trainer.n_critic=1"], steps=3, split=2)


def test_g_ema_keeps_copying_the_live_w_avg_after_a_resume(tmp_path):
    # the Trainer pairs G_ema's copied buffers with G's once; they must still be G's
    # buffers after training steps and after a resume loads a checkpoint into them
    base = [*RUNS["stylegan"], "trainer.checkpoint_every=2", "trainer.n_critic=1"]
    run_train(tmp_path, [*base, "trainer.steps=2"])
    run_train(tmp_path, [*base, "trainer.steps=3", f"resume={tmp_path}"])
    models = ckpt.load(tmp_path)[1]["models"]
    assert models["G"]["w_avg"].abs().sum() > 0  # G tracked its w average
    assert torch.equal(models["G_ema"]["w_avg"], models["G"]["w_avg"])


def test_stylegan_samples_truncate_in_w_and_draw_the_mixing_grid(trained, tmp_path):
    run_dir = trained("stylegan")
    G, _, _ = load_generator(run_dir, torch.device("cpu"))
    assert G.TRUNCATION_SPACE == "w" and not G.training
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for p in (a, b):  # noise inside G is seeded too: same seed, same picture
        sample(_sample_cfg(f"ckpt={run_dir}", "n=4", "truncation=0.5", "seed=3", f"out={p}"), p)
    assert a.read_bytes() == b.read_bytes()
    out = tmp_path / "mix.png"
    sample(
        _sample_cfg(f"ckpt={run_dir}", "mixing=true", "mixing_columns=3", "mixing_rows=1",
                    "truncation=0.7", f"out={out}"),
        out,
    )  # fmt: skip
    # 1 + 3 columns, 1 + 3 groups x 1 rows, of 32 px with 2 px padding
    assert Image.open(out).size == (4 * 34 + 2, 4 * 34 + 2)
    grid, nrow = stylegan.style_mixing_grid(G, 3, 1)
    assert nrow == 4 and grid.shape == (16, 3, 32, 32)
    top_a, rows = grid[1:4], grid[4:].view(3, 4, 3, 32, 32)
    for g, (start, stop) in enumerate(G.mixing_ranges().values()):
        assert 0 <= start < stop <= G.num_ws
        assert not torch.allclose(rows[g, 1:], top_a)  # B's styles changed the A images
    assert list(G.mixing_ranges().values()) == [(0, 4), (4, 6), (6, 8)]
    with pytest.raises(ConfigError, match="style-based generator"):
        sample(_sample_cfg(f"ckpt={trained('sagan')}", "mixing=true", f"out={out}"), out)

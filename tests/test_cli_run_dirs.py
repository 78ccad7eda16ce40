"""Run dirs and what a run leaves in them (issue 17): readable, deterministic run-dir
names that a requeued job finds again, the user's hydra.run.dir / hydra.sweep.* still
in charge; the resolved config at the start of a run; `~` in paths; a failed download
or a relative dataset.root under hydra.job.chdir=true."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from ganrun import cli
from ganrun.runname import MAX_LENGTH, run_name, sweep_subdir_override
from tests.conftest import cli_error, compose_config, run_train, tiny_overrides

TINY = tiny_overrides("dcgan", "mnist_embedded", "logger.tensorboard=false", "trainer.steps=1")


# --------------------------------------------------------------------------- names
def test_a_run_name_says_model_dataset_and_overrides_and_is_safe():
    choices = {"model": "dcgan", "dataset": "mnist_embedded", "loss": "nonsaturating"}
    name = run_name(["loss=hinge", "optimizer.lr_d=4e-4", "seed=1"], choices)
    assert name == "dcgan_mnist_embedded_hinge_lr_d-4e-4_seed-1"
    assert run_name(["optimizer.lr_d=4e-4", "seed=1", "loss=hinge"], choices) != name  # order kept
    # how a run executes is not part of its name (a launcher adds trainer.threads)
    assert run_name(["seed=1", "trainer.threads=2", "hydra.job.chdir=true"], choices) == (
        "dcgan_mnist_embedded_seed-1"
    )
    # paths become their last part, lists lose brackets; nothing Hydra's grammar or a
    # file system would trip on, however long
    odd = run_name(
        ["dataset.root=/home/me/my pictures/", "regularizer=[gp,r1]", "model.note='a=b,c'"]
        + [f"model.k{i}={i * 1000}" for i in range(40)],
        {**choices, "regularizer": None},
    )
    assert len(odd) <= MAX_LENGTH and "my-pictures" in odd and "gp+r1" in odd
    assert not set(odd) & set("=,/ []{}'\"~$"), odd
    assert odd == run_name(  # deterministic: a requeued job computes the same name
        ["dataset.root=/home/me/my pictures/", "regularizer=[gp,r1]", "model.note='a=b,c'"]
        + [f"model.k{i}={i * 1000}" for i in range(40)],
        {**choices, "regularizer": None},
    )
    # a name can be given back unquoted: resume=<dir>, ckpt=<dir>
    (ov,) = OverridesParser.create().parse_overrides([f"resume=outputs/2026-12-02/10-31-05_{odd}"])
    assert not ov.is_sweep_override() and ov.value().endswith(odd)


def test_the_run_dir_is_named_and_a_given_one_wins():
    cfg = compose_config(["model=sngan", "optimizer.lr_d=4e-4"], hydra=True)
    folder = Path(str(cfg.hydra.run.dir))
    assert folder.parent.parent.name == "outputs"
    assert folder.name.endswith("_sngan_mnist_embedded_lr_d-4e-4"), folder
    cfg = compose_config(["model=wgan_gp", "loss=hinge", "regularizer=[gp,r1]"], hydra=True)
    assert str(cfg.hydra.run.dir).endswith("_wgan_gp_mnist_embedded_hinge_gp+r1")  # groups: options
    cfg = compose_config(["model=sngan", "hydra.run.dir=mine/here"], hydra=True)
    assert str(cfg.hydra.run.dir) == "mine/here"


def _job_config(overrides: list[str], hydra_overrides: list[str], num: int):
    """A multirun job's config as Hydra's launchers build it (load_sweep_config), with
    its job number: what a requeued job's process rebuilds from the stored overrides."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from ganrun.config import register_configs
    from ganrun.paths import conf_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("train", hydra_overrides, RunMode.MULTIRUN)
        job = loader.load_sweep_config(master, overrides)
    with open_dict(job):
        job.hydra.job.num = num
        job.hydra.mode = RunMode.MULTIRUN
    return job


def test_a_sweeps_job_dirs_are_numbered_named_and_found_again_by_a_requeued_job():
    args = ["-m", *TINY, "seed=0,1", "optimizer.lr_d=1e-4"]
    extended = cli._name_sweep_jobs(args)
    (subdir,) = [a for a in extended if a.startswith("hydra.sweep.subdir=")]
    assert subdir == sweep_subdir_override(["seed"])  # what the sweep varies
    hydra_overrides = [subdir]
    names = []
    for num, seed in enumerate((0, 1)):
        job = [*TINY, f"seed={seed}", "optimizer.lr_d=1e-4"]
        first = str(_job_config(job, hydra_overrides, num).hydra.sweep.subdir)
        again = str(_job_config(job, hydra_overrides, num).hydra.sweep.subdir)  # requeued
        assert first == again
        names.append(first)
    assert names == ["0_seed-0", "1_seed-1"]
    # the user's subdir stays theirs
    mine = ["-m", "seed=0,1", "hydra.sweep.subdir=${hydra.job.num}"]
    assert cli._name_sweep_jobs(mine) == mine
    # no swept key on the command line (an Optuna search's are its params): the YAML's
    # ${hydra.job.num}_${ganrun.run_name:} still starts with the number
    plain = str(_job_config([*TINY, "seed=3"], [], 7).hydra.sweep.subdir)
    assert plain.startswith("7_dcgan_mnist_embedded") and len(plain) <= MAX_LENGTH + 2


# --------------------------------------------------------------------------- resolved config
def test_a_run_starts_with_its_resolved_config_and_recipe_line(tmp_path, caplog):
    with caplog.at_level("INFO"):
        run_train(tmp_path, tiny_overrides("wgan_gp", "mnist_embedded", "trainer.steps=1"))
    text = (tmp_path / "config.yaml").read_text()
    assert "${" not in text
    cfg = OmegaConf.load(tmp_path / "config.yaml")
    assert cfg.trainer.n_critic == 5 and cfg.optimizer.lr_d == pytest.approx(1e-4)
    assert list(cfg.regularizer) == ["gp"]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("recipe:"))
    for needle in ("loss wasserstein", "gp(weight=10)", "lr_d=0.0001", "n_critic 5", "seed 0"):
        assert needle in line, line
    assert str(tmp_path / "config.yaml") in line


# --------------------------------------------------------------------------- paths and data
def test_tilde_in_a_path_is_expanded_before_hydra_parses_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.expand_home(["dataset.root=~/pictures", "~seed", "a=b~c", "-m"]) == [
        f"dataset.root={tmp_path}/pictures",
        "~seed",
        "a=b~c",
        "-m",
    ]
    assert cli.expand_home(["out=~"]) == [f"out={tmp_path}"]
    spaced = tmp_path / "a b"
    monkeypatch.setenv("HOME", str(spaced))
    (quoted,) = cli.expand_home(["dataset.root=~/x"])
    assert OverridesParser.create().parse_overrides([quoted])[0].value() == f"{spaced}/x"
    # the README's example parses; the image folder it names does not exist here
    err = cli_error(["train", "dataset=image_folder", "dataset.root=~/pictures"], capsys)
    assert f"dataset.root={spaced}/pictures is not a folder" in err


def test_a_failed_download_leaves_no_run_dir_and_no_data_folder(tmp_path, monkeypatch, capsys):
    """torchvision cannot download here (no network): one line, and the folder the
    command ran in is as it was: no outputs/<date>/<time>/, no empty data/MNIST/raw/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept").mkdir()
    err = cli_error(["train", "dataset=mnist", "dataset.download=true"], capsys)
    assert "could not download MNIST" in err and str(tmp_path / "data" / "MNIST") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    # a root below an existing folder: the folders the download made go, that one stays
    err = cli_error(
        ["train", "dataset=mnist", "dataset.download=true", "dataset.root=kept/a"], capsys
    )
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["kept"]


def test_a_relative_root_under_chdir_names_the_absolute_folder(tmp_path, monkeypatch, capsys):
    """With hydra.job.chdir=true the job runs in its run dir; dataset.root is still read
    from where ganrun was started, and the message says which folder that is."""
    monkeypatch.chdir(tmp_path)
    err = cli_error(["train", "dataset=mnist", "dataset.root=rel", "hydra.job.chdir=true"], capsys)
    assert str(tmp_path / "rel" / "MNIST" / "raw") in err, err
    assert not (tmp_path / "outputs").exists()
    # in the job (Hydra's runtime.cwd set, the cwd the run dir) the same folder
    from ganrun.data.vision import data_folder

    assert data_folder("rel") == tmp_path / "rel"
    assert data_folder("~/x") == Path(os.path.expanduser("~/x"))

"""Sweeps: ganrun's Optuna sweeper, the joblib / submitit launchers, hparams_search files.

Most tests run the installed `ganrun` command in a subprocess (a sweep is a process
with signals, worker processes and files), on tiny PacGAN runs on the ring of 8
Gaussians scored by mode coverage (eval=modes), a few seconds each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna", reason="the sweeps extra: pip install 'ganrun[sweeps]'")
pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

from tests.conftest import compose_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
_BIN = Path(sys.executable).parent / "ganrun"
GANRUN = [
    str(_BIN) if _BIN.exists() else sys.executable,
    *([] if _BIN.exists() else ["-m", "ganrun.cli"]),
    "train",
]

# a tiny PacGAN2 on the ring, scored by mode coverage: well under a second per run
RING = [
    "model=pacgan_mlp",
    "dataset=ring",
    "eval=modes",
    "model.width=16",
    "model.pack=2",
    "trainer.batch_size=32",
    "trainer.steps=4",
    "eval.every=2",
    "trainer.device=cpu",
    "trainer.progress=false",
    "trainer.log_every=1",
    "logger=none",
]
# the shipped search, shrunk
SEARCH = ["hparams_search=ring_modes", *RING[3:], "trainer.threads=1"]


def ganrun(args, cwd, timeout=240, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}
    return subprocess.run(
        [*GANRUN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw
    )


def trials(sweep: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep / "trials.jsonl").read_text().splitlines()]


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def job_overrides(run_dir: Path) -> list[str]:
    return yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())


def wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended (status {proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def job_dir(sweep: Path, number: int) -> Path:
    """Job ``number``'s dir: its name starts with the number (``0_seed-1``; a bare ``0``
    under hydra.sweep.subdir=${hydra.job.num}), ganrun/runname.py."""
    found = sorted(sweep.glob(f"{number}_*")) + [p for p in [sweep / str(number)] if p.exists()]
    found = [p for p in found if p.is_dir()]
    assert len(found) <= 1, found
    return found[0] if found else sweep / str(number)


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("step-*.pt"))


# --------------------------------------------------------------------------- search space
def test_search_space_reads_hydras_grammar_as_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from ganrun.sweepers.space import parse

    fixed, space = parse(
        [
            "trainer.steps=100",
            "optimizer.lr_d=tag(log, interval(1e-5, 1e-3))",
            "optimizer.betas=choice([0.0,0.9],[0.5,0.999])",
            "trainer.n_critic=choice(1,2,5)",
            "trainer.batch_size=range(16,64,16)",
            "trainer.steps=200",  # a later value of the same key wins
        ]
    )
    assert fixed == ["trainer.steps=200"]
    lr, betas, n_critic, batch = (space[k].distribution for k in list(space))
    assert lr == FloatDistribution(1e-5, 1e-3, log=True)
    # lists stay their override text; plain values stay values (for Optuna's models)
    assert betas == CategoricalDistribution(["[0.0,0.9]", "[0.5,0.999]"])
    assert n_critic == CategoricalDistribution([1, 2, 5])
    assert batch == IntDistribution(16, 48, step=16)  # range() excludes stop, as in Python
    assert space["optimizer.betas"].override("[0.5,0.999]") == "optimizer.betas=[0.5,0.999]"
    assert space["optimizer.lr_d"].override(2.5e-4) == "optimizer.lr_d=0.00025"
    assert space["trainer.n_critic"].override(5) == "trainer.n_critic=5"


@pytest.mark.parametrize("name", ["ring_modes", "wgan_gp_lr", "sngan_lr"])
def test_each_hparams_search_composes_and_its_space_parses(name):
    from omegaconf import OmegaConf, open_dict

    from ganrun.build import validate
    from ganrun.sweepers.space import parse
    from ganrun.training.evaluation import sweep_score

    cfg = compose_config([f"hparams_search={name}"], hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.ganrun_sweepers.OptunaSweeper"
    assert "${" not in str(cfg.hydra.sweep.dir), "a fixed sweep dir: the same command continues"
    params = OmegaConf.to_container(sweeper.params)
    _, space = parse([f"{k}={v}" for k, v in params.items()])
    assert len(space) >= 3 and sweeper.n_trials >= 10
    metric, _ = sweep_score(cfg)
    assert metric is not None
    text = (REPO / "conf" / "hparams_search" / f"{name}.yaml").read_text()
    assert text.count("\n#") >= 5  # says what it searches and why those ranges
    for point in (0, -1):  # both ends of every parameter compose and validate
        d = [
            p.override(
                p.distribution.choices[point]
                if hasattr(p.distribution, "choices")
                else (p.distribution.low, p.distribution.high)[point]
            )
            for p in space.values()
        ]
        trial = compose_config([f"hparams_search={name}", *d])
        with open_dict(trial):
            trial.pop("hydra", None)
        validate(trial)


def test_preflight_leaves_interval_sweeps_to_the_sweeper():
    from ganrun import cli

    args = ["-m", "hydra/sweeper=ganrun_optuna", "optimizer.lr_d=interval(1e-5,1e-3)"]
    assert cli.preflight("train", list(args)) == args


# --------------------------------------------------------------------------- grid + joblib
def test_a_2x2_grid_with_joblib_gives_four_finished_run_dirs(tmp_path):
    sweep = tmp_path / "grid"
    r = ganrun(
        [
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}",
            *RING,
            "seed=0,1",
            "optimizer.lr_d=1e-4,2e-4",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    # job dirs named by number, then what the sweep varies (ganrun/runname.py)
    assert [p.name for p in runs] == [
        f"{n}_seed-{s}_lr_d-{lr}"
        for n, (s, lr) in enumerate([(0, "0.0001"), (0, "0.0002"), (1, "0.0001"), (1, "0.0002")])
    ]
    cores = os.cpu_count() or 1
    for run in runs:
        assert status(run)["status"] == "finished"
        # two jobs at once share the cores: each gets its share of torch threads
        assert f"trainer.threads={max(1, cores // 2)}" in job_overrides(run)
    assert {tuple(sorted(o for o in job_overrides(r_) if o.startswith(("seed", "optimizer"))))
            for r_ in runs} == {
        (f"optimizer.lr_d={lr}", f"seed={s}") for s in (0, 1) for lr in ("0.0001", "0.0002")
    }  # fmt: skip


def test_trainer_threads_given_by_the_user_is_kept():
    from omegaconf import OmegaConf

    from ganrun.sweepers import with_threads

    cfg = OmegaConf.create({"trainer": {"threads": None}})
    assert with_threads(cfg, [["a=1"], ["trainer.threads=4"]], 2) == [
        ["a=1", "trainer.threads=2"],
        ["trainer.threads=4"],
    ]
    assert with_threads(OmegaConf.create({"trainer": {"threads": 3}}), [["a=1"]], 2) == [["a=1"]]
    assert with_threads(OmegaConf.create({"ckpt": "x"}), [["a=1"]], 2) == [["a=1"]]  # not train


# --------------------------------------------------------------------------- Optuna
def test_optuna_search_interrupted_and_continued_by_the_same_command(tmp_path):
    """3 trials; SIGTERM while trial 1 trains (exit 75, trial 1 left RUNNING with a
    checkpoint); the same command again finishes the study: trial 1 continues in its
    own dir (auto-resume), trial 2 runs, and no job dir holds another trial's run."""
    sweep = tmp_path / "search"
    args = [
        "-m",
        *SEARCH,
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=1",
        "trainer.steps=500",
        "trainer.checkpoint_every=25",
        "trainer.log_every=50",
        "eval.every=1000",
    ]
    proc = subprocess.Popen(
        [*GANRUN, *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for(lambda: has_checkpoint(job_dir(sweep, 1)), 180, "trial 1's first checkpoint", proc)
        assert status(job_dir(sweep, 0))["status"] == "finished"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, err[-3000:]
    assert "rerun the same command to continue" in err
    first = trials(sweep)
    assert [(t["number"], t["state"]) for t in first] == [(0, "COMPLETE"), (1, "RUNNING")]
    assert status(job_dir(sweep, 1))["status"] == "stopped"

    r = ganrun(args, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    done = trials(sweep)
    assert [(t["number"], t["state"]) for t in done] == [(n, "COMPLETE") for n in range(3)]
    assert done[0] == first[0]  # a finished trial is not run again
    assert done[1]["params"] == first[1]["params"]
    log1 = (job_dir(sweep, 1) / "train.log").read_text()
    assert "auto-resume" in log1, "the interrupted trial continues its own checkpoint"
    for t in done:  # every job dir holds its own trial, nothing else
        run = sweep / t["run_dir"]
        assert run == job_dir(sweep, t["number"]) and status(run)["status"] == "finished"
        assert job_overrides(run)[: len(t["overrides"])] == t["overrides"]
        assert isinstance(t["value"], float)
    numbered = [p.name.split("_")[0] for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()]
    assert sorted(numbered) == ["0", "1", "2"]
    best = yaml.safe_load((sweep / "best.yaml").read_text())
    values = [t["value"] for t in done]
    assert best["value"] == max(values) and best["metric"] == "high_quality"
    assert best["direction"] == "maximize" and best["trials"]["total"] == 3
    assert best["command"].startswith("ganrun train hparams_search=ring_modes ")
    assert best["command"] in r.stdout, "the best trial is printed as a command line"
    assert best["params"] == done[best["number"]]["params"]

    # how a trial runs may change (threads, logging): the same study, nothing to do
    again = ganrun([*args, "trainer.threads=2", "trainer.log_every=7"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert trials(sweep) == done

    # the same sweep dir with another search (a fixed setting changed) is refused
    before = {p.name: p.read_bytes() for p in sweep.iterdir() if p.is_file()}
    other = ganrun([*args, "model.width=32"], tmp_path)
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert "holds the study of another search" in other.stderr
    assert "model.width=32 now" in other.stderr
    after = {p.name: p.read_bytes() for p in sweep.iterdir() if p.is_file()}
    assert after.keys() == before.keys()
    for name in ("multirun.yaml", "best.yaml", "trials.jsonl", "optuna.journal"):
        assert after[name] == before[name], f"{name} changed by a refused rerun"


def test_a_trial_that_diverges_is_fail_with_its_line_and_never_best(tmp_path):
    sweep = tmp_path / "search"
    r = ganrun(
        [
            "-m",
            *SEARCH,
            f"hydra.sweep.dir={sweep}",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.sampler.name=random",
            # lr_g=1e30 diverges at once: the guard stops that run with exit status 3
            "optimizer.lr_g=choice(1e-4,1e30)",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    done = trials(sweep)
    states = {t["params"]["optimizer.lr_g"]: set() for t in done}
    for t in done:
        states[t["params"]["optimizer.lr_g"]].add(t["state"])
    assert states == {1e-4: {"COMPLETE"}, 1e30: {"FAIL"}}, done
    failed = [t for t in done if t["state"] == "FAIL"]
    for t in failed:
        assert t["value"] is None and t["status"] == "diverged"
        assert t["message"].startswith("training diverged at step")
        assert t["message"] == status(sweep / t["run_dir"])["message"]
    best = yaml.safe_load((sweep / "best.yaml").read_text())
    assert best["params"]["optimizer.lr_g"] == 1e-4
    assert best["trials"]["fail"] == len(failed)


@pytest.mark.slow  # ~8 s quiet: a subprocess per launcher with the extra hidden
def test_without_the_sweeps_extra_the_sweeper_and_launchers_say_so_in_one_line(tmp_path):
    fake = tmp_path / "fake"
    for name in ("optuna", "submitit"):  # shadows the installed package
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n"
        )
    env = {"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])}
    for args in (
        ["-m", *SEARCH, f"hydra.sweep.dir={tmp_path / 's'}"],
        ["-m", "hydra/launcher=submitit_local", *RING, f"hydra.sweep.dir={tmp_path / 'l'}"],
    ):
        r = ganrun(args, tmp_path, env=env)
        assert r.returncode == 2, r.stderr[-2000:]
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("ganrun: error: hydra/")
        assert r.stderr.rstrip().endswith("pip install 'ganrun[sweeps]'")


# --------------------------------------------------------------------------- submitit
@pytest.mark.slow  # the preemption test below runs the same launcher in the fast suite
def test_submitit_local_runs_a_grid_each_job_in_its_own_process(tmp_path):
    sweep = tmp_path / "local"
    r = ganrun(
        ["-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}", *RING, "seed=0,1"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    pids = set()
    for job in (0, 1):
        s = status(job_dir(sweep, job))
        assert s["status"] == "finished"
        pids.add(s["pid"])
    assert len(pids) == 2 and r.stdout.count("submitit") + r.stderr.count("submitit") > 0
    assert any((sweep / ".submitit").rglob("*_result.pkl"))


def test_submitit_job_preempted_by_sigusr1_checkpoints_requeues_and_continues(tmp_path):
    """The SLURM path on this machine: SIGUSR1 to a running job -> ganrun checkpoints
    and exits 75 -> submitit requeues the job -> it continues from that checkpoint in
    the same job dir and finishes; the sweep ends normally."""
    sweep = tmp_path / "local"
    proc = subprocess.Popen(
        [
            *GANRUN,
            "-m",
            "hydra/launcher=submitit_local",
            f"hydra.sweep.dir={sweep}",
            *RING,
            "trainer.threads=1",
            "trainer.steps=600",
            "trainer.checkpoint_every=25",
            "trainer.log_every=100",
            "eval.every=300",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: has_checkpoint(job_dir(sweep, 0)), 180, "the job's first checkpoint", proc)
        job = job_dir(sweep, 0)  # named once it exists (0_vanilla_ring_...)
        pid = status(job)["pid"]
        os.kill(pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    log = (job / "train.log").read_text()
    assert "SIGUSR1" in log and "auto-resume" in log, log[-3000:]
    final = status(job)
    assert final["status"] == "finished" and final["step"] == 600 and final["pid"] != pid
    submitit_log = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in submitit_log


def test_slurm_launcher_config_and_its_sbatch_parameters_are_what_the_docs_say(
    tmp_path, monkeypatch
):
    from omegaconf import OmegaConf

    # submitit's SLURM executor looks for srun; nothing is submitted here
    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)

    cfg = compose_config(
        ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.sweep.dir=/tmp/x"],
        hydra=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.ganrun_sweepers.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
    assert (launcher.signal_delay_s, launcher.max_num_timeout, launcher.cpus_per_task) == (
        120,
        10,
        4,
    )
    from ganrun.sweepers.submitit_launchers import SlurmLauncher

    params = OmegaConf.to_container(launcher, resolve=True)
    params.pop("_target_")
    impl = SlurmLauncher(**params)
    assert impl.threads(3) == 4  # trainer.threads = cpus_per_task
    text = impl.executor()._executor._make_submission_file_text("python -m x", "uid")
    for line in (
        "#SBATCH --signal=USR1@120",  # ganrun checkpoints on SIGUSR1
        "#SBATCH --partition=gpu",
        "#SBATCH --time=240",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --ntasks-per-node=1",
    ):
        assert line in text, text
    assert os.environ["SUBMITIT_PREEMPT_SIGNAL"] == "USR1"


# --------------------------------------------------------------------------- packaging
def test_the_wheel_ships_the_plugin_shim_as_top_level_hydra_plugins(tmp_path):
    out = tmp_path / "wheel"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        capture_output=True, text=True,
    )  # fmt: skip
    if r.returncode != 0 and "hatchling" in (r.stderr + r.stdout):
        pytest.skip("hatchling (a dev dependency) is not installed")
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("ganrun-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    assert "hydra_plugins/ganrun_sweepers/__init__.py" in names
    assert "hydra_plugins/__init__.py" not in names  # a namespace package, shared with others
    assert not any(n.startswith("ganrun/_plugins") for n in names)
    site = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(whl)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    code = (
        "import hydra_plugins.ganrun_sweepers as m; print(m.__file__)\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.sweeper import Sweeper\n"
        "print(' '.join(c.__module__ + '.' + c.__name__ for c in Plugins.instance().discover(Sweeper)))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    where, sweepers = r.stdout.splitlines()
    assert Path(where).is_relative_to(site)
    assert "hydra_plugins.ganrun_sweepers.OptunaSweeper" in sweepers.split()


@pytest.mark.slow  # ~40 s: four submitit job processes
def test_a_trial_stopped_by_sigterm_without_requeue_stays_running_and_is_continued(tmp_path):
    """SIGTERM (a cluster's scancel, or preemption without --signal) to one trial's job:
    it checkpoints and exits 75, submitit does not requeue it, the search goes on and
    leaves that trial RUNNING (not FAIL, not a result); the same command continues it."""
    sweep = tmp_path / "search"
    args = [
        "-m",
        *SEARCH,
        "hydra/launcher=submitit_local",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=1",
        "trainer.steps=400",
        "trainer.checkpoint_every=25",
        "trainer.log_every=100",
        "eval.every=200",
    ]
    proc = subprocess.Popen(
        [*GANRUN, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: has_checkpoint(job_dir(sweep, 0)), 180, "trial 0's first checkpoint", proc)
        os.kill(status(job_dir(sweep, 0))["pid"], signal.SIGTERM)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    first = trials(sweep)
    assert [(t["number"], t["state"]) for t in first] == [(0, "RUNNING"), (1, "COMPLETE")]
    assert first[0]["status"] == "stopped" and "SIGTERM" in first[0]["message"]
    assert "1 stopped: rerun the same command" in out

    r = ganrun(args, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    done = trials(sweep)
    assert [(t["number"], t["state"]) for t in done] == [(0, "COMPLETE"), (1, "COMPLETE")]
    assert "auto-resume" in (job_dir(sweep, 0) / "train.log").read_text()
    assert status(job_dir(sweep, 0))["status"] == "finished"


@pytest.mark.slow  # 20-40 s here: two sweeps with joblib workers
def test_a_joblib_search_stopped_by_sigterm_exits_75_and_continues(tmp_path):
    """SIGTERM to the sweep process while two trials train in joblib workers: exit 75
    with the search's own line (joblib ends its workers at once); the same command
    continues both trials from their last checkpoints and completes the study."""
    sweep = tmp_path / "search"
    args = [
        "-m",
        *SEARCH,
        "hydra/launcher=joblib",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2",
        "trainer.steps=400",
        "trainer.checkpoint_every=25",
        "trainer.log_every=100",
        "eval.every=200",
    ]
    proc = subprocess.Popen(
        [*GANRUN, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(
            lambda: has_checkpoint(job_dir(sweep, 0)) and has_checkpoint(job_dir(sweep, 1)),
            180,
            "both trials' first checkpoints",
            proc,
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, err[-3000:]
    assert "rerun the same command to continue the study" in err
    assert "nothing was trained" not in err
    assert [t["state"] for t in trials(sweep)] == ["RUNNING", "RUNNING"]

    r = ganrun(args, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [t["state"] for t in trials(sweep)] == ["COMPLETE"] * 3
    for job in (0, 1):
        assert "auto-resume" in (job_dir(sweep, job) / "train.log").read_text()


def test_a_misspelt_search_key_or_no_score_is_one_line_before_any_trial(tmp_path):
    sweep = tmp_path / "s"
    base = ["-m", "hydra/sweeper=ganrun_optuna", f"hydra.sweep.dir={sweep}"]
    for args, fragment in (
        (
            [*RING, "optimizer.lr_dd=interval(1e-5,1e-3)"],
            "the search space does not compose (optimizer.lr_dd=1e-05)",
        ),
        (["optimizer.lr_d=interval(1e-5,1e-3)"], "an Optuna search needs a score to optimize"),
    ):
        r = ganrun([*base, *args], tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
        assert r.stderr.startswith(f"ganrun: error: {fragment}"), r.stderr
        assert not sweep.exists()

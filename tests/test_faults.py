"""Disk full, read-only, unwritable, a file where a folder should be: every file
ganrun writes fails with one line (``ganrun: error: cannot write <path>: <cause>``),
exit status 2, no traceback, earlier checkpoints intact and no partial file under
a final name (issue 15, "Disk full, unwritable, read-only").

How each fault is made:

| fault   | how                                                                          |
| ------- | ---------------------------------------------------------------------------- |
| ENOSPC  | a small tmpfs mounted on the folder written to (root); else a patched write  |
| EROFS   | a tmpfs remounted read-only (root)                                           |
| EACCES  | the command run as user 65534 via setpriv (root ignores permissions)         |
| ENOTDIR | ``out=`` naming a child of a regular file                                    |
| EEXIST  | a regular file where ganrun creates a folder (``eval/``, ``per_image``)      |

Tests that need root, mount(8) or setpriv(1) skip with the reason when they are
missing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from ganrun import checkpoint as ckpt
from ganrun import fsio
from tests.conftest import run_train, tiny_overrides

# the digits at their native 28 px: the small disks below are sized for its checkpoints
TRAIN = [
    "trainer.steps=2",
    "trainer.checkpoint_every=1",
    "logger.tensorboard=false",
    "dataset.resolution=28",
]


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def mount(request):
    """``mount(folder, size="64k", read_only=False)``: a tmpfs on ``folder``, unmounted
    at the end of the test. Skips when this process may not mount."""

    def _mount(
        folder: Path, size: str = "64k", read_only: bool = False, fill: int | None = None
    ) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        folder.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {r.stderr.strip()}")
        request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(folder)], check=False))
        if fill is not None:  # leave about `fill` bytes free
            _fill(folder, keep=fill)
        if read_only:
            r = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True)
            if r.returncode != 0:
                pytest.skip(f"cannot remount read-only: {r.stderr.strip()}")
        return folder

    return _mount


def _fill(folder: Path, keep: int) -> None:
    """Fill ``folder``'s file system to the last byte, then free about ``keep`` bytes."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    if keep:
        os.truncate(filler, max(0, filler.stat().st_size - keep))


def cli_fails(args: list[str], capsys, monkeypatch, cwd: Path) -> str:
    """``ganrun <args>`` in-process: non-zero exit (2), exactly one ``ganrun: error:``
    line on stderr, no traceback of any kind. Returns that line."""
    from hydra.core.global_hydra import GlobalHydra

    from ganrun import cli

    monkeypatch.setattr(sys, "argv", ["ganrun"])
    monkeypatch.chdir(cwd)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main(args)
    finally:
        GlobalHydra.instance().clear()
    captured = capsys.readouterr()
    err = captured.err
    errors = [ln for ln in err.splitlines() if ln.startswith("ganrun: error:")]
    assert e.value.code == 2, (e.value.code, err)
    assert len(errors) == 1, err
    for bad in ("Traceback", "Exception in thread", "Logging error", "HYDRA_FULL_ERROR"):
        assert bad not in err + captured.out, err
    return errors[0]


def no_temporaries(folder: Path) -> None:
    left = [p.name for p in folder.rglob(".*") if ".tmp-" in p.name or ".partial-" in p.name]
    assert not left, left


def as_nobody() -> list[str]:
    """A command prefix that drops root (and so its permission bypass)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv(1) to run as an unprivileged user")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def shared_dir(request) -> Path:
    """A folder every user can read (tmp_path's parent is root's alone): files for
    a process run as user 65534."""
    folder = Path(tempfile.mkdtemp(prefix="ganrun-faults-"))
    folder.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny run with checkpoints at steps 1 and 2."""
    run = tmp_path_factory.mktemp("faults") / "run"
    run_train(run, tiny_overrides("dcgan", "mnist_embedded", *TRAIN))
    return run


def loads(run: Path, step: int) -> None:
    path, state = ckpt.load(run)
    assert state["step"] == step and path.name == f"step-{step:08d}.pt"


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_on_a_full_disk(tmp_path, mount, capsys, monkeypatch):
    """Today: RuntimeError: [enforce fail at inline_container.cc] ... unexpected pos."""
    run = tmp_path / "run"
    mount(run / "checkpoints", size="384k")  # room for one checkpoint of ~250 kB
    args = ["train", *tiny_overrides("dcgan", "mnist_embedded", *TRAIN), f"hydra.run.dir={run}"]
    line = cli_fails(args, capsys, monkeypatch, tmp_path)
    target = run / "checkpoints" / "step-00000002.pt"
    assert f"cannot write {target}: no space left on device (ENOSPC)" in line, line
    assert "hydra.run.dir=" in line, line  # what would be right
    assert not target.exists()
    no_temporaries(run)
    loads(run, 1)


def test_whole_run_dir_on_a_full_disk(tmp_path, mount, capsys, monkeypatch):
    """The run dir itself on a small disk: whichever write fails first (the log, a
    picture, a checkpoint) is one line naming a file of the run; what was written
    before stays loadable."""
    run = mount(tmp_path / "run", size="320k")
    args = [
        "train",
        *tiny_overrides("dcgan", "mnist_embedded", *TRAIN),
        "trainer.image_every=1",
        f"hydra.run.dir={run}",
    ]
    line = cli_fails(args, capsys, monkeypatch, tmp_path)
    assert f"cannot write {run}/" in line and "(ENOSPC)" in line, line
    no_temporaries(run)
    loads(run, 1)


def test_torch_save_enforce_fail_is_translated(tmp_path, monkeypatch):
    """torch.save's own report of a full disk (a RuntimeError, the OSError only its
    context, or no OSError at all) is a WriteError naming the file; a RuntimeError
    on a disk with room stays what it is."""
    first = ckpt.save(tmp_path, 1, {"x": torch.ones(3)}, keep=5)

    def full_disk(obj, f):
        f.write(b"PK\x03\x04partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"
            ) from None

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(fsio.WriteError, match=r"step-00000002\.pt: no space left.*\(ENOSPC\)"):
        ckpt.save(tmp_path, 2, {"x": torch.ones(3)}, keep=5)

    def bare(obj, f):
        f.write(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", bare)
    full = os.statvfs_result((4096, 4096, 100, 100, 0, 100, 100, 0, 0, 255))
    monkeypatch.setattr(fsio.os, "statvfs", lambda p: full)
    with pytest.raises(fsio.WriteError, match=r"step-00000003\.pt: no space left"):
        ckpt.save(tmp_path, 3, {"x": torch.ones(3)}, keep=5)
    monkeypatch.undo()
    monkeypatch.setattr(torch, "save", bare)  # plenty of room: not the disk's doing
    with pytest.raises(RuntimeError, match="enforce fail"):
        ckpt.save(tmp_path, 4, {"x": torch.ones(3)}, keep=5)
    monkeypatch.undo()
    assert [s for s, _ in ckpt.step_checkpoints(tmp_path / "checkpoints")] == [1]
    assert ckpt.load_file(first)["step"] == 1
    no_temporaries(tmp_path)


def test_unwritable_checkpoint_folder_as_an_unprivileged_user(shared_dir):
    """EACCES for real (root would ignore the mode): the earlier file stays."""
    prefix = as_nobody()
    folder = shared_dir / "checkpoints"
    folder.mkdir()
    earlier = ckpt.write(folder / "step-00000001.pt", 1, {"x": torch.ones(2)})
    code = (
        "import sys, torch; from ganrun import checkpoint as c, fsio\n"
        "try:\n"
        f"    c.write(c.Path({str(folder)!r}) / 'step-00000002.pt', 2, {{'x': torch.ones(2)}})\n"
        "except fsio.WriteError as e:\n"
        "    print(e); sys.exit(2)\n"
    )
    env = {**os.environ, "HOME": str(shared_dir), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"cannot write {folder}/step-00000002.pt: permission denied (EACCES)" in r.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000001.pt"]
    assert ckpt.load_file(earlier)["step"] == 1


# --------------------------------------------------------------------------- training's other writes
def test_progress_picture_on_a_full_disk(tmp_path, mount, capsys, monkeypatch):
    """Today: AttributeError: '_idat' object has no attribute 'fileno' from PIL."""
    run = tmp_path / "run"
    mount(run / "samples", size="4k")  # one page: the first picture fits, not two
    args = [
        "train",
        *tiny_overrides("dcgan", "mnist_embedded", *TRAIN),
        "trainer.steps=3",
        "trainer.image_every=1",
        f"hydra.run.dir={run}",
    ]
    line = cli_fails(args, capsys, monkeypatch, tmp_path)
    assert "cannot write" in line and str(run / "samples") in line and "(ENOSPC)" in line, line
    assert "hydra.run.dir=" in line, line
    loads(run, 1)


def test_progress_picture_on_a_full_disk_leaves_no_partial_picture(
    tmp_path, mount, capsys, monkeypatch
):
    run = tmp_path / "run"
    mount(run / "samples", size="4k")
    args = [
        "train",
        *tiny_overrides("dcgan", "mnist_embedded", *TRAIN),
        "trainer.steps=3",
        "trainer.image_every=1",
        f"hydra.run.dir={run}",
    ]
    cli_fails(args, capsys, monkeypatch, tmp_path)
    for p in (run / "samples").glob("*.png"):
        with Image.open(p) as img:
            img.load()  # a partial or empty PNG raises


def test_tensorboard_on_a_full_disk(tmp_path, mount, capsys, monkeypatch):
    """Today: "Exception in thread" with TensorBoard's writer thread's traceback,
    then the same OSError again in the main thread."""
    run = tmp_path / "run"
    mount(run / "tb", size="4k")
    over = [o for o in TRAIN if not o.startswith("logger.")]
    args = [
        "train",
        *tiny_overrides("dcgan", "mnist_embedded", *over),
        "trainer.n_fixed=64",  # a picture TensorBoard cannot fit in 4k
        f"hydra.run.dir={run}",
    ]
    line = cli_fails(args, capsys, monkeypatch, tmp_path)
    assert f"cannot write {run / 'tb'}/events.out.tfevents." in line and "(ENOSPC)" in line, line
    loads(run, 2)


def test_log_file_on_a_full_disk_warns_once(tmp_path, mount, capsys, monkeypatch):
    """A log file that stops taking lines: one warning, not logging's traceback per record."""
    import logging

    from ganrun.commands import report_errors

    folder = mount(tmp_path / "logs", size="4k")
    handler = logging.FileHandler(folder / "train.log")
    root = logging.getLogger()
    # only this handler: an earlier in-process Hydra run may have left a console
    # handler on a capture stream that is closed by now
    monkeypatch.setattr(root, "handlers", [handler])
    try:

        def chatty():
            for i in range(200):
                logging.getLogger("ganrun.test").warning("line %d %s", i, "x" * 100)
            return "done"

        assert report_errors(chatty) == "done"
    finally:
        root.removeHandler(handler)
        with contextlib.suppress(OSError):  # its buffer cannot be flushed either
            handler.close()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("ganrun: warning:")]
    assert len(warnings) == 1, err
    assert f"cannot write {folder / 'train.log'}: no space left on device (ENOSPC)" in warnings[0]


# --------------------------------------------------------------------------- ganrun sample
def test_sample_grid_on_a_full_disk(trained, tmp_path, mount, capsys, monkeypatch):
    """Today: AttributeError: '_idat' object has no attribute 'fileno'; a partial PNG."""
    disk = mount(tmp_path / "disk", size="64k", fill=2048)
    out = disk / "grid.png"
    line = cli_fails(
        ["sample", f"ckpt={trained}", "n=64", f"out={out}"], capsys, monkeypatch, tmp_path
    )
    assert f"cannot write {out}: no space left on device (ENOSPC)" in line, line
    assert "out=" in line
    assert not out.exists()
    no_temporaries(disk)


def test_sample_per_image_on_a_full_disk(trained, tmp_path, mount, capsys, monkeypatch):
    """The pictures written before the disk filled are whole; the failing one is absent."""
    disk = mount(tmp_path / "disk", size="64k", fill=6000)
    folder = disk / "imgs"
    args = ["sample", f"ckpt={trained}", "n=64", "per_image=true", f"out={folder}"]
    line = cli_fails(args, capsys, monkeypatch, tmp_path)
    assert f"cannot write {folder}/" in line and "(ENOSPC)" in line, line
    written = sorted(folder.glob("*.png"))
    assert len(written) < 64
    for p in written:
        with Image.open(p) as img:
            img.load()
    no_temporaries(disk)


def test_sample_with_a_patched_full_disk(trained, tmp_path, capsys, monkeypatch):
    """ENOSPC without mount(8): the write itself fails."""
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fsio, "open", lambda p, m="r": Full(real_open(p, m)), raising=False)
    out = tmp_path / "pics" / "grid.png"
    line = cli_fails(["sample", f"ckpt={trained}", f"out={out}"], capsys, monkeypatch, tmp_path)
    assert f"cannot write {out}: no space left on device (ENOSPC)" in line, line
    assert not out.exists()
    no_temporaries(tmp_path)


def test_sample_on_a_read_only_file_system(trained, tmp_path, mount, capsys, monkeypatch):
    ro = mount(tmp_path / "ro", read_only=True)
    out = ro / "grid.png"
    line = cli_fails(["sample", f"ckpt={trained}", f"out={out}"], capsys, monkeypatch, tmp_path)
    assert f"cannot write {out}: read-only file system (EROFS)" in line, line
    assert "choose another out=" in line


def test_sample_out_below_a_regular_file(trained, tmp_path, capsys, monkeypatch):
    """ENOTDIR, and EEXIST for a per_image folder where a file is (run dir elsewhere)."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    hydra_dir = f"hydra.run.dir={tmp_path / 'hydra'}"
    out = blocker / "grid.png"
    args = ["sample", f"ckpt={trained}", f"out={out}", hydra_dir]
    line = cli_fails(args, capsys, monkeypatch, tmp_path)
    assert f"cannot write {out}: {blocker} is a file, not a folder (ENOTDIR)" in line, line
    args = ["sample", f"ckpt={trained}", "per_image=true", f"out={blocker}", hydra_dir]
    line = cli_fails(args, capsys, monkeypatch, tmp_path)
    assert f"{blocker} is a file, not a folder (EEXIST)" in line, line
    assert blocker.read_text() == "a file"


def test_sample_as_an_unprivileged_user(trained, shared_dir):
    """EACCES for real: a folder this user may not write to."""
    prefix = as_nobody()
    run = shared_dir / "run"
    shutil.copytree(trained / "checkpoints", run / "checkpoints")
    for p in [run, *run.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o755)  # root's: others may read, not write
    out = locked / "grid.png"
    from tests.conftest import ganrun_exe

    env = {**os.environ, "HOME": str(shared_dir), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    r = subprocess.run(
        [*prefix, ganrun_exe(), "sample", f"ckpt={run}", f"out={out}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=shared_dir,
        timeout=300,
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1 and f"cannot write {out}: permission denied (EACCES)" in lines[0], lines
    assert list(locked.iterdir()) == []


# --------------------------------------------------------------------------- ganrun eval
@pytest.fixture
def eval_env(tmp_path_factory, monkeypatch):
    from tests.test_metrics import save_tiny_evaluator

    root = tmp_path_factory.mktemp("evalcache")
    save_tiny_evaluator(root / "cache")
    monkeypatch.setenv("GANRUN_CACHE", str(root / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    return ["metrics=[fid]", "n=16", "batch_size=16", "features=mnist-classifier"]


def test_eval_out_on_read_only_and_below_a_file(
    trained, eval_env, tmp_path, mount, capsys, monkeypatch
):
    """Today: OSError / NotADirectoryError tracebacks, after the metrics were computed."""
    ro = mount(tmp_path / "ro", read_only=True)
    out = ro / "scores.json"
    line = cli_fails(
        ["eval", f"ckpt={trained}", *eval_env, f"out={out}"], capsys, monkeypatch, tmp_path
    )
    assert f"cannot write {out}: read-only file system (EROFS)" in line, line
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    out = blocker / "scores.json"
    line = cli_fails(
        ["eval", f"ckpt={trained}", *eval_env, f"out={out}"], capsys, monkeypatch, tmp_path
    )
    assert f"cannot write {out}: {blocker} is a file, not a folder (ENOTDIR)" in line, line


def test_eval_out_on_a_full_disk(trained, eval_env, tmp_path, mount, capsys, monkeypatch):
    disk = mount(tmp_path / "disk", size="64k", fill=0)
    out = disk / "scores.json"
    line = cli_fails(
        ["eval", f"ckpt={trained}", *eval_env, f"out={out}"], capsys, monkeypatch, tmp_path
    )
    assert f"cannot write {out}: no space left on device (ENOSPC)" in line, line
    assert not out.exists()
    no_temporaries(disk)


def test_eval_default_output_where_a_file_blocks_it(
    trained, eval_env, tmp_path, capsys, monkeypatch
):
    """EEXIST: <run dir>/eval is a regular file; the run's checkpoints are untouched."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "eval").write_text("not a folder")
    line = cli_fails(["eval", f"ckpt={run}", *eval_env], capsys, monkeypatch, tmp_path)
    assert f"{run / 'eval'} is a file, not a folder (EEXIST)" in line, line
    assert "out=<file>.json" in line
    loads(run, 2)


# --------------------------------------------------------------------------- fit-evaluator, fetch-weights
FIT = ["epochs=1", "width=4", "feature_dim=8", "min_accuracy=0"]


def test_fit_evaluator_out_on_a_read_only_file_system(tmp_path, mount, capsys, monkeypatch):
    """Refused before the training, with one line."""
    import ganrun.metrics.classifier as clf

    def no_training(*a, **k):
        raise AssertionError("trained although the output cannot be written")

    monkeypatch.setattr(clf, "train_classifier", no_training)
    ro = mount(tmp_path / "ro", read_only=True)
    out = ro / "clf.pt"
    line = cli_fails(["fit-evaluator", *FIT, f"out={out}"], capsys, monkeypatch, tmp_path)
    assert f"cannot write {out}: read-only file system (EROFS)" in line, line


def test_fit_evaluator_out_on_a_full_disk(tmp_path, mount, capsys, monkeypatch):
    disk = mount(tmp_path / "disk", size="64k", fill=4096)
    out = disk / "clf.pt"
    line = cli_fails(
        ["fit-evaluator", *FIT, "width=8", f"out={out}"], capsys, monkeypatch, tmp_path
    )
    assert f"cannot write {out}: no space left on device (ENOSPC)" in line, line
    assert not out.exists()
    no_temporaries(disk)


def test_fetch_weights_out_on_a_full_disk_and_read_only(tmp_path, mount, capsys, monkeypatch):
    """The download fills the disk: one line naming the destination, no partial file
    (today: "could not download ... (No space left on device)", naming no file system
    problem); a read-only destination is refused before downloading."""
    from ganrun.metrics import weights

    calls = []

    def download(url, dest):
        calls.append(dest)
        with open(dest, "wb") as f:
            f.write(b"\0" * 200_000)

    monkeypatch.setattr(weights, "_download", download)
    disk = mount(tmp_path / "disk", size="64k")
    out = disk / "inception.pth"
    line = cli_fails(["fetch-weights", f"out={out}"], capsys, monkeypatch, tmp_path)
    assert f"cannot write {out}: no space left on device (ENOSPC)" in line, line
    assert list(disk.iterdir()) == [] and len(calls) == 1
    ro = mount(tmp_path / "ro", read_only=True)
    out = ro / "inception.pth"
    line = cli_fails(["fetch-weights", f"out={out}"], capsys, monkeypatch, tmp_path)
    assert f"cannot write {out}: read-only file system (EROFS)" in line, line
    assert len(calls) == 1  # nothing downloaded


# --------------------------------------------------------------------------- fsio
def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = fsio.atomic_write_bytes(tmp_path / "a.json", b"old")
    monkeypatch.setattr(fsio.os, "replace", _raise(errno.EROFS))
    with pytest.raises(fsio.WriteError, match=r"a\.json: read-only file system \(EROFS\)"):
        fsio.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["a.json"]


def _raise(code):
    def fail(*a, **k):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize(
    "code, expected",
    [
        (errno.ENOSPC, "no space left on device (ENOSPC); free space or choose another out=..."),
        (errno.EDQUOT, "disk quota exceeded (EDQUOT); free space or"),
        (errno.EACCES, "permission denied (EACCES)"),
        (errno.EROFS, "read-only file system (EROFS); choose another out=..."),
        (errno.EISDIR, "it is a folder (EISDIR)"),
    ],
)
def test_write_error_messages(code, expected, tmp_path):
    e = fsio.write_error(
        OSError(code, os.strerror(code)), tmp_path / "x.png", elsewhere="choose another out=..."
    )
    assert str(e).startswith(f"cannot write {tmp_path / 'x.png'}: {expected}"), str(e)
    assert e.exit_status == 2 and "\n" not in str(e)


def test_write_error_in_finds_the_oserror_and_its_file(tmp_path):
    """An error that only wraps the OSError (as torch and PIL do), with the file in an
    open file object of the traceback (as TensorBoard's writer)."""
    target = tmp_path / "events.out"
    try:
        with open(target, "wb") as f:
            try:
                f.write(b"x")
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise AttributeError("'_idat' object has no attribute 'fileno'") from None
    except AttributeError as e:
        err = fsio.write_error_in(e)
    assert err is not None and str(err).startswith(f"cannot write {target}: no space left"), err
    assert fsio.write_error_in(ValueError("unrelated")) is None
    assert fsio.write_error_in(OSError(errno.EIO, "I/O error")) is None  # keeps its traceback

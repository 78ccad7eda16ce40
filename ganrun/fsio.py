"""Writing files so that a full disk, a read-only file system or a missing
permission ends in one line, and never in a partial file under a final name.

Every file ganrun writes (checkpoints, sample pictures, eval JSON, evaluators,
downloaded weights) goes through ``atomic_open`` / ``atomic_write_bytes``: the
data goes to a temporary ``.<name>.tmp-<pid>`` beside the final name, is
fsynced and renamed over it, and the temporary file is removed on any failure.
An OSError of the kinds in ``WRITE_ERRNOS`` becomes a ``WriteError``, which the
CLI prints as ``ganrun: error: cannot write <path>: <cause> (<ERRNO>); <remedy>``
with exit status 2.

Two failures do not arrive as an OSError with a file name, and are handled
here too: ``torch.save`` reports a full disk as ``RuntimeError: [enforce fail
at inline_container.cc:...] unexpected pos`` (the OSError is only its
context), and PIL as an AttributeError about ``fileno``. The exception chain is
searched for the OSError; when there is none, a folder with no free space left
(``os.statvfs``) is taken to mean ENOSPC.

``write_error_in`` is the CLI's backstop for writes that do not come through
here (TensorBoard's event files, Hydra's ``train.log``): it finds the OSError
in an exception's chain and the file it was writing (the exception's
``filename``, or the innermost frame of the traceback that holds an open file
or a ``filename``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ganrun.errors import GanrunError

# The errors that say "this place cannot take this file"; anything else (EIO, a
# bug) keeps its traceback.
WRITE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EFBIG,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.EISDIR,
        errno.ENAMETOOLONG,
    }
)
_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "file name too long",
}
DEFAULT_ELSEWHERE = "write somewhere else"
RUN_DIR_ELSEWHERE = "choose another run dir with hydra.run.dir=..."
TMP_INFIX = ".tmp-"  # temporary files are ".<name>.tmp-<pid>" (checkpoint.clean_temporaries)


class WriteError(GanrunError):
    """A file could not be written: ``path`` (the final name), ``errno``."""

    def __init__(self, message: str, path: Path | None = None, code: int | None = None):
        super().__init__(message)
        self.path, self.errno = path, code


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, f"errno {code}")


def _blocker(path: Path) -> Path | None:
    """The first existing component of ``path`` (from the root down) that is not a folder."""
    path = Path(os.path.abspath(path))
    for p in [*reversed(path.parents), path]:
        try:
            if p.exists() and not p.is_dir():
                return p
        except OSError:
            return None
    return None


def cause_and_remedy(
    code: int, path: Path | None, elsewhere: str = DEFAULT_ELSEWHERE
) -> tuple[str, str]:
    """('<cause> (<ERRNO>)', '<remedy>') for a failed write of ``path``."""
    name = errno_name(code)
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = _blocker(path) if path is not None else None
        if blocker is not None:
            return (
                f"{blocker} is a file, not a folder ({name})",
                f"move that file away or {elsewhere}",
            )
        cause = "a part of the path is not a folder" if code == errno.ENOTDIR else "file exists"
        return f"{cause} ({name})", elsewhere
    cause = f"{_CAUSES.get(code, os.strerror(code).lower())} ({name})"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return cause, f"free space or {elsewhere}"
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"{cause}{_user()}",
            f"make the folder writable (check its owner and mode) or {elsewhere}",
        )
    return cause, elsewhere


def cause(e: OSError, path: Path | str | None = None) -> str:
    """'<cause> (<ERRNO>)' of a failed file operation, without a remedy."""
    if not e.errno:
        return str(e).strip().lower() or type(e).__name__
    where = path if path is not None else getattr(e, "filename", None)
    return cause_and_remedy(int(e.errno), Path(os.fsdecode(where)) if where else None)[0]


def describe(code: int, path: Path | None, elsewhere: str = DEFAULT_ELSEWHERE) -> str:
    """'<cause> (<ERRNO>); <remedy>' for a failed write of ``path``."""
    return "; ".join(cause_and_remedy(code, path, elsewhere))


def _user() -> str:
    try:
        import pwd

        return f" for user {pwd.getpwuid(os.geteuid()).pw_name}"
    except (ImportError, KeyError, AttributeError):
        return ""


def write_error(
    e: OSError,
    path: Path | str | None = None,
    *,
    elsewhere: str = DEFAULT_ELSEWHERE,
    action: str = "write",
) -> WriteError:
    """The one-line error for ``e``, naming ``path`` (else the file ``e`` names)."""
    code = int(e.errno or 0)
    if path is None and getattr(e, "filename", None):
        path = e.filename
    path = Path(os.fsdecode(path)) if path is not None else None
    where = f" {path}" if path is not None else " a file"
    return WriteError(
        f"cannot {action}{where}: {describe(code, path, elsewhere)}", path=path, code=code
    )


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def write_oserror(exc: BaseException) -> OSError | None:
    """The OSError of a failed write (errno in WRITE_ERRNOS) in ``exc``'s chain."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return e
    return None


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _path_in_traceback(exc: BaseException) -> str | None:
    """The file a failed write was writing, from the innermost frame that holds an
    open file with a path name (``fp`` in PIL, ``f`` in ``open()`` blocks) or an
    object with a ``filename`` (TensorBoard's GFile)."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in list(frame.f_locals.values()):
            name = None
            if isinstance(value, io.IOBase):
                name = getattr(value, "name", None)
            elif hasattr(value, "filename") and not isinstance(value, BaseException):
                name = getattr(value, "filename", None)
            if isinstance(name, (str, bytes, os.PathLike)) and os.sep in os.fsdecode(name):
                return os.fsdecode(name)
    return None


def write_error_in(exc: BaseException, elsewhere: str = DEFAULT_ELSEWHERE) -> WriteError | None:
    """A WriteError for an exception that a failed write caused (a WriteError in its
    chain, or an OSError of the kinds in WRITE_ERRNOS); None for anything else."""
    for e in _chain(exc):
        if isinstance(e, WriteError):
            return e
    os_error = write_oserror(exc)
    if os_error is None:
        return None
    path = os_error.filename
    if path is None:
        for e in [os_error, *_chain(exc)]:
            path = _path_in_traceback(e)
            if path:
                break
    if path is not None and elsewhere == DEFAULT_ELSEWHERE and _in_run_dir(Path(os.fsdecode(path))):
        elsewhere = RUN_DIR_ELSEWHERE
    return write_error(os_error, path, elsewhere=elsewhere)


def _in_run_dir(path: Path) -> bool:
    """Whether ``path`` lies in a training run dir (one holding .hydra/ or checkpoints/)."""
    for folder in Path(os.path.abspath(path)).parents:
        if (folder / ".hydra").is_dir() or (folder / "checkpoints").is_dir():
            return True
    return False


# --------------------------------------------------------------------------- writing
def make_dirs(folder: Path | str, elsewhere: str = DEFAULT_ELSEWHERE) -> Path:
    """``mkdir -p folder``; a failure is a WriteError naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise write_error(e, folder, elsewhere=elsewhere, action="create folder") from None
    return folder


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_INFIX}{os.getpid()}")


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; where folders cannot be opened or synced
    (some platforms and file systems), the file itself was synced already."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: Path | str, elsewhere: str = DEFAULT_ELSEWHERE) -> Iterator[IO[bytes]]:
    """A binary file to write ``path``'s new contents to; on leaving the block it is
    fsynced and renamed to ``path`` (the folder is created and synced too). On any
    error the temporary file is removed and ``path`` is left as it was; a failed
    write (full disk, read-only, no permission, a file where a folder should be)
    is raised as a one-line WriteError, even when the writer (torch.save, PIL)
    wrapped the OSError in an error of its own."""
    path = Path(path)
    make_dirs(path.parent, elsewhere)
    tmp = temporary_path(path)
    created = False
    try:
        with open(tmp, "wb") as f:
            created = True
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        created = False
    except BaseException as e:
        error = _failed_write(e, path, elsewhere) if isinstance(e, Exception) else None
        if created:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if error is not None:
            raise error from None
        raise
    fsync_folder(path.parent)


def _failed_write(e: Exception, path: Path, elsewhere: str) -> WriteError | None:
    """The WriteError for an exception raised while writing ``path``, or None when it
    was not the disk's doing. Called before the temporary file is removed, so a full
    disk still shows as full."""
    if isinstance(e, WriteError):
        return e
    os_error = write_oserror(e)
    if os_error is not None:
        return write_error(os_error, path, elsewhere=elsewhere)
    if isinstance(e, (OSError, RuntimeError, AttributeError)):
        # torch.save given a path, or a writer that dropped the OSError: a folder
        # with no room left is the cause
        free = _free_bytes(path.parent)
        if free is not None and free < 64 * 1024:
            return write_error(OSError(errno.ENOSPC, "full"), path, elsewhere=elsewhere)
    return None


def atomic_write_bytes(path: Path | str, data: bytes, elsewhere: str = DEFAULT_ELSEWHERE) -> Path:
    with atomic_open(path, elsewhere) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: Path | str, text: str, elsewhere: str = DEFAULT_ELSEWHERE) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), elsewhere)


# --------------------------------------------------------------------------- images
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def encode_image(img: Any, suffix: str = ".png") -> bytes:
    """A (C, H, W) float tensor in [0, 1] encoded in memory (PNG, or JPEG for .jpg).
    Grey pictures (one channel, or three equal ones: torchvision's grids repeat a
    grey channel) are written as greyscale ("L"), not RGB."""
    import torch
    from PIL import Image
    from torchvision.utils import save_image

    buf = io.BytesIO()
    fmt = IMAGE_FORMATS.get(suffix.lower(), "PNG")
    if img.dim() == 3 and (
        img.shape[0] == 1
        or (img.shape[0] == 3 and torch.equal(img[0], img[1]) and torch.equal(img[1], img[2]))
    ):
        grey = img[0].mul(255).add_(0.5).clamp_(0, 255).to("cpu", torch.uint8).numpy()
        Image.fromarray(grey, mode="L").save(buf, format=fmt)
    else:
        save_image(img, buf, format=fmt)
    return buf.getvalue()


def write_image(img: Any, path: Path | str, elsewhere: str = DEFAULT_ELSEWHERE) -> Path:
    """Save a (C, H, W) picture in [0, 1] atomically: encoded in memory first, so
    a full disk fails in one plain write and leaves no partial picture."""
    path = Path(path)
    return atomic_write_bytes(path, encode_image(img, path.suffix), elsewhere)


# --------------------------------------------------------------------------- checks
def check_writable(target: Path | str, elsewhere: str, folder: bool = False) -> None:
    """Before any work: could ``target`` (a file, or a folder with ``folder=True``) be
    written? The nearest existing ancestor must be a folder this user may write to,
    on a file system that is not read-only; otherwise a WriteError whose remedy ends
    in ``elsewhere`` ("choose another out=..."). Cannot see a disk about to fill."""
    target = Path(os.path.abspath(Path(target).expanduser()))
    if target.exists():
        if folder and not target.is_dir():
            raise write_error(OSError(errno.EEXIST, "exists"), target, elsewhere=elsewhere)
        if not folder and target.is_dir():
            raise write_error(OSError(errno.EISDIR, "folder"), target, elsewhere=elsewhere)
    parent = target if folder else target.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise write_error(OSError(errno.ENOTDIR, "not a folder"), target, elsewhere=elsewhere)
    probe = existing
    try:
        st = os.statvfs(probe)
        read_only = bool(st.f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        raise write_error(OSError(errno.EROFS, "read-only"), target, elsewhere=elsewhere)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise write_error(OSError(errno.EACCES, "denied"), target, elsewhere=elsewhere)


# --------------------------------------------------------------------------- the CLI's side
@contextlib.contextmanager
def quiet_write_failures(warn: Callable[[str], None] | None = None) -> Iterator[None]:
    """While a command runs: a log file that cannot be written (train.log on a full
    disk) gives one warning line instead of logging's "--- Logging error ---" and a
    traceback per record; TensorBoard's writer thread dying of a failed write prints
    no "Exception in thread" traceback (it re-raises the error in the main thread at
    the next write, where the CLI reports it). Other threads' failed writes give one
    warning line."""
    import logging

    warn = warn or (lambda m: print(f"ganrun: warning: {m}", file=sys.stderr, flush=True))
    root = logging.getLogger()
    consoles = [
        h
        for h in root.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    patched = []
    for h in root.handlers:
        if isinstance(h, logging.FileHandler):
            patched.append((h, h.__dict__.get("handleError")))
            h.handleError = _quiet_handle_error(h, warn, bool(consoles))
    old_hook = threading.excepthook

    def thread_hook(args):
        error = write_error_in(args.exc_value) if args.exc_value is not None else None
        if error is None:
            return old_hook(args)
        if type(args.thread).__name__ == "_AsyncWriterThread":  # TensorBoard re-raises it
            return None
        warn(f"{args.thread.name if args.thread else 'a thread'}: {error}")
        return None

    threading.excepthook = thread_hook
    try:
        yield
    finally:
        threading.excepthook = old_hook
        for h, old in patched:
            if old is None:
                h.__dict__.pop("handleError", None)
            else:
                h.handleError = old


def _quiet_handle_error(handler, warn: Callable[[str], None], console: bool):
    original = type(handler).handleError
    warned = []

    def handle_error(record):
        exc = sys.exc_info()[1]
        if exc is None or write_oserror(exc) is None:
            return original(handler, record)
        if not warned:
            warned.append(True)
            path = Path(handler.baseFilename)
            cause, _ = cause_and_remedy(int(write_oserror(exc).errno or 0), path)
            rest = " (the console still shows them)" if console else ""
            warn(f"cannot write {path}: {cause}; its log lines from here on are lost{rest}")
        return None

    return handle_error

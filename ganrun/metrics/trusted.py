"""What torch-fidelity and torchvision load for an evaluation, made safe to load.

torch-fidelity reads its cache of real features and FID statistics, the Inception
and VGG-16 weights with ``torch.load(weights_only=False)``; torchvision (VGG-16) and
torch.hub (CLIP) unpickle a file already in ``$TORCH_HOME/hub/checkpoints`` freely,
checking its hash only when they download it. A pickle planted in any of those
files would run its code. So torch-fidelity never reads a file someone else could
have placed: for each evaluation ganrun makes a private folder (``mkdtemp``: mode
0700, an unpredictable name, removed afterwards) and puts in it only

* weights with a known full SHA-256 (Inception, CLIP), hashed while they are copied
  there, so the bytes torch-fidelity reads are the bytes that were checked, even if
  the original changes between the check at start-up and an evaluation hours later;
* the VGG-16 state dict, reloaded with ``torch.load(weights_only=True)`` and saved
  again (torchvision publishes only 8 hex digits of its SHA-256, too few to trust:
  they are checked as a sanity test of the file, not as a defence);
* the cached real features, read from ganrun's cache with ``weights_only=True``
  and required to be an ``(n_real, d)`` floating-point tensor.

torch-fidelity's ``cache_root`` is that folder. The features it computes there on a
cache miss are copied into ganrun's cache afterwards; its FID statistics (NumPy
arrays, which ``weights_only`` refuses) are dropped and recomputed from the
features, so no statistics file is ever read. A cached file that is not what ganrun
wrote is refused with one line: ``<path>: ... (delete it to recompute)``.

Extractors whose files cannot be checked (DINOv2: ``torch.hub.load`` imports a repo's
Python code from ``$TORCH_HOME/hub``) are refused.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ganrun.errors import GanrunError

log = logging.getLogger(__name__)

STAGING = ".staging-"  # private folders: .staging-<pid>@<host>-<random>


class RefusedFile(GanrunError):
    """A file that an evaluation would load is not the one expected: one line."""


# --------------------------------------------------------------------------- known weights
@dataclass(frozen=True)
class KnownFile:
    """A weights file torch-fidelity loads from torch.hub's cache."""

    what: str  # for messages
    url: str
    file_name: str  # in $TORCH_HOME/hub/checkpoints
    sha256: str  # full digest, or the prefix the file name carries
    stage: str  # "copy": bytes checked against sha256; "state_dict": reloaded weights-only

    @property
    def full_digest(self) -> bool:
        return len(self.sha256) == 64


def _vgg16() -> KnownFile:
    import torchvision

    url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url  # .../vgg16-397923af.pth
    name = url.rsplit("/", 1)[1]
    return KnownFile(
        "the VGG-16 weights", url, name, name.rsplit("-", 1)[1].split(".")[0], "state_dict"
    )


VGG16 = _vgg16()


def clip_file(name: str) -> KnownFile:
    from torch_fidelity.feature_extractor_clip import MODEL_METADATA, MODEL_URLS

    digest = MODEL_METADATA[name]["hash"]  # OpenAI's URLs carry the full SHA-256
    return KnownFile(f"the {name} weights", MODEL_URLS[name], f"{name}-{digest}.pt", digest, "copy")


def known_file(name: str) -> KnownFile | None:
    """The checked weights of torch-fidelity's downloaded extractor ``name``, or None."""
    if name == "vgg16":
        return VGG16
    if name.startswith("clip-"):
        from torch_fidelity.feature_extractor_clip import MODEL_METADATA

        if name in MODEL_METADATA:
            return clip_file(name)
    return None


def hub_file(known: KnownFile) -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / known.file_name


def resolve(known: KnownFile, download: bool = True) -> Path:
    """The local file of ``known`` (downloaded into torch.hub's cache if missing).
    Its content is checked when an evaluation stages it (``stage_weights``)."""
    path = hub_file(known)
    if path.is_file():
        return path
    if not download:
        raise RefusedFile(
            f"{known.what} are not available offline: put {known.file_name} (from {known.url}) at {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        # torch.hub compares the digest's first len(hash_prefix) hex digits
        torch.hub.download_url_to_file(known.url, str(tmp), hash_prefix=known.sha256, progress=True)
        os.replace(tmp, path)
    except (urllib.error.URLError, OSError, RuntimeError, ValueError) as e:
        reason = (
            getattr(e, "reason", None) or (str(e).strip().splitlines() or [type(e).__name__])[0]
        )
        raise RefusedFile(
            f"could not download {known.what} from {known.url} ({reason}); "
            f"with no network, fetch that file on another machine and put it at {path}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------- private folder
@contextmanager
def private_dir(base: Path) -> Iterator[Path]:
    """A folder only this process writes, under ``base`` (the system temp folder when
    ``base`` is not writable); removed on exit. Those left by killed processes of this
    host are removed first."""
    host = socket.gethostname().replace("/", "_")
    _remove_stale(base, host)
    try:
        base.mkdir(parents=True, exist_ok=True)
        path = tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}@{host}-", dir=base)
    except OSError:
        path = tempfile.mkdtemp(prefix=f"ganrun{STAGING}{os.getpid()}@{host}-")
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _remove_stale(base: Path, host: str) -> None:
    try:
        entries = list(base.glob(f"{STAGING}*"))
    except OSError:
        return
    for p in entries:
        owner, _, rest = p.name[len(STAGING) :].partition("@")
        if not owner.isdigit() or rest.rsplit("-", 1)[0] != host or int(owner) == os.getpid():
            continue  # another host's (a shared cache) or ours
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except OSError:  # alive, another user's
            pass


# --------------------------------------------------------------------------- weights
def stage_weights(path: str | None, known_digest: str, stage: str, into: Path) -> str | None:
    """The file torch-fidelity should load instead of ``path``.

    ``stage``: "copy" (copied into ``into`` while hashed; refused unless the digest is
    ``known_digest``), "state_dict" (the digest must start with ``known_digest``; then
    reloaded with weights_only=True and saved again in ``into``), or "as-is" (ganrun's
    own extractor reads it weights-only)."""
    if path is None or stage == "as-is":
        return path
    src = Path(path)
    dest = into / src.name
    h = hashlib.sha256()
    try:
        with open(src, "rb") as f, open(dest, "wb") if stage == "copy" else nullcontext() as out:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                if out is not None:
                    out.write(block)
    except OSError as e:
        raise RefusedFile(f"{src}: cannot be read ({e.strerror or e})") from None
    digest = h.hexdigest()
    if not digest.startswith(known_digest):
        raise RefusedFile(
            f"{src}: SHA-256 {digest[:16]}... is not the expected {known_digest[:16]}...; "
            "refusing to load it (delete it to download it again, or replace it)"
        )
    if stage == "copy":
        return str(dest)
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RefusedFile(
            f"{src}: {_why_refused(e)}; refusing to load it (delete it to download it again)"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise RefusedFile(
            f"{src}: not a state dict of tensors; refusing to load it (delete it to download it again)"
        )
    torch.save(state, dest)
    return str(dest)


def _why_refused(e: BaseException) -> str:
    text = str(e)
    if "weights_only" in text or "Unsupported global" in text or "Unsupported operand" in text:
        return "holds Python objects that could run code"
    first = (text.strip().splitlines() or [type(e).__name__])[0]
    return f"unreadable ({first[:120]})"


# --------------------------------------------------------------------------- real features
def _pattern(prefix: str) -> str:
    return f"{glob.escape(prefix)}*.pt"


def load_features(path: Path, n_real: int) -> torch.Tensor:
    """A cached (n_real, d) feature tensor, read weights-only; RefusedFile otherwise."""
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RefusedFile(
            f"{path}: {_why_refused(e)}, not the features ganrun caches; "
            "refusing to load it (delete it to recompute)"
        ) from None
    if not isinstance(t, torch.Tensor):
        what = f"not a tensor ({type(t).__name__})"
    elif t.dim() != 2 or not t.is_floating_point() or t.shape[0] != n_real:
        what = f"a {t.dtype} tensor of shape {tuple(t.shape)}, not {n_real} rows of features"
        if t.dim() >= 1:
            what = f"{t.shape[0]} rows: {what}"
    else:
        return t
    raise RefusedFile(f"{path}: {what}; refusing to load it (delete it to recompute)")


def stage_features(cache: Path, prefix: str, into: Path, n_real: int) -> set[str]:
    """Copy ganrun's cached real features ``<cache>/<prefix>*.pt`` into ``into`` (each
    read weights-only and checked first); the names staged."""
    staged = set()
    for path in sorted(cache.glob(_pattern(prefix))):
        torch.save(load_features(path, n_real), into / path.name)
        staged.add(path.name)
    return staged


def keep_features(into: Path, prefix: str, cache: Path, staged: set[str]) -> None:
    """Features torch-fidelity computed in ``into`` go into ganrun's cache (atomically).
    A cache that cannot be written only costs recomputation."""
    for path in sorted(into.glob(_pattern(prefix))):
        if path.name in staged:
            continue
        dest = cache / path.name
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except OSError as e:
            log.warning("could not write %s: %s", dest, e)
        finally:
            tmp.unlink(missing_ok=True)

"""The InceptionV3 weights behind IS/FID/KID: where they come from, and a check
that a local copy is the right file.

torch-fidelity's ``inception-v3-compat`` extractor loads
``weights-inception-2015-12-05-6726825d.pth`` (the TensorFlow FID network of
Heusel et al. 2017, converted to PyTorch) from its GitHub release into torch.hub's
cache. ganrun looks for the file, in order:

1. ``eval.inception_weights=<file>`` (``inception_weights=`` for ``ganrun eval``);
2. the environment variable ``GANRUN_INCEPTION_WEIGHTS``;
3. torch.hub's cache, ``$TORCH_HOME/hub/checkpoints/<file name>`` (where
   torch-fidelity and ``ganrun fetch-weights`` put it);
4. otherwise it downloads it there (what torch-fidelity would do).

Any file used is checked against the full SHA-256 below before use; a download
that fails (no network) gives one line naming the URL and where to put the file.
The path is then handed to torch-fidelity explicitly, so it never downloads itself.

The digest: the file name carries its first 8 hex digits (torch.hub's
convention); the full value, 6726825d0af5...29b2 for 95,628,359 bytes, is the
one published for this file by several independent projects that pin it (the
same bytes as pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``). It could
not be recomputed here (no network); the prefix agrees with the file name.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

from ganrun import fsio
from ganrun.errors import GanrunError

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_BYTES = 95_628_359
ENV_VAR = "GANRUN_INCEPTION_WEIGHTS"


class WeightsError(GanrunError):
    pass


def hub_path() -> Path:
    """Where torch-fidelity's own download would land (torch.hub's cache)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def where_to_put() -> str:
    return (
        f"put {INCEPTION_FILE} (from {INCEPTION_URL}) at {hub_path()}, "
        f"or point eval.inception_weights=<file> or {ENV_VAR} at a copy"
    )


def verify(path: Path, source: str) -> Path:
    """``path`` if it is the expected file, else WeightsError (one line)."""
    from ganrun.metrics.classifier import file_sha256

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{source}: no file at {path}; {where_to_put()}")
    digest = file_sha256(path)
    if digest != INCEPTION_SHA256:
        raise WeightsError(
            f"{source}: {path} is not the InceptionV3 weights torch-fidelity expects "
            f"(SHA-256 {digest[:16]}..., expected {INCEPTION_SHA256}); replace it: {where_to_put()}"
        )
    return path


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` to ``dest`` (a temporary name, renamed after the check)."""
    import torch.hub

    torch.hub.download_url_to_file(url, str(dest), progress=True)


def fetch(dest: Path | None = None) -> Path:
    """Download the weights to ``dest`` (default: torch.hub's cache) and verify them."""
    explicit = dest is not None
    dest = Path(dest).expanduser() if dest else hub_path()
    if dest.is_file():
        return verify(dest, "existing file")
    elsewhere = "choose another out=<file>" if explicit else "set TORCH_HOME to a writable folder"
    # before the 95 MB download: a read-only place, or a file where a folder should be
    fsio.check_writable(dest, elsewhere)
    fsio.make_dirs(dest.parent, elsewhere)
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        _download(INCEPTION_URL, tmp)
        verify(tmp, "download")
        os.replace(tmp, dest)
        fsio.fsync_folder(dest.parent)
    except WeightsError:
        raise
    except Exception as e:
        if not isinstance(e, urllib.error.URLError) and fsio.write_oserror(e) is not None:
            raise fsio.write_error(fsio.write_oserror(e), dest, elsewhere=elsewhere) from None
        if not isinstance(e, (urllib.error.URLError, OSError, RuntimeError, ValueError)):
            raise
        reason = getattr(e, "reason", None) or str(e).strip().splitlines()[0] or type(e).__name__
        raise WeightsError(
            f"could not download the InceptionV3 weights from {INCEPTION_URL} ({reason}); "
            f"with no network, fetch that file on another machine and put it at {dest}"
            f" (or point eval.inception_weights=<file> or {ENV_VAR} at it)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def resolve_inception(explicit: str | None = None, download: bool = True) -> Path:
    """A verified local path to the InceptionV3 weights (see the module docstring)."""
    if explicit:
        return verify(Path(explicit), "inception_weights")
    env = os.environ.get(ENV_VAR)
    if env:
        return verify(Path(env), ENV_VAR)
    cached = hub_path()
    if cached.is_file():
        return verify(cached, "torch.hub cache")
    if download:
        return fetch(cached)
    raise WeightsError(f"the InceptionV3 weights are not available offline: {where_to_put()}")

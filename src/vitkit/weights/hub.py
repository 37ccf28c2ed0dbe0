"""Downloads through a cache folder: progress bar, SHA-256 check, resume-safe temporary files,
offline mode.

The cache is ``$VITKIT_CACHE`` or ``$XDG_CACHE_HOME/vitkit`` (``~/.cache/vitkit``), files under
``weights/``. A download is written to ``NAME.part`` and renamed into place only once complete and
verified, so an interrupted download never looks finished; the next try resumes the ``.part`` file
with an HTTP range request. Offline (``VITKIT_OFFLINE=1`` or ``offline=True``) nothing is fetched and
a missing file raises an error that says which file to get and where to put it.
"""
from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)
CHUNK = 1 << 20
TRUE = ("1", "true", "yes", "on")


def cache_dir(path: str | Path | None = None) -> Path:
    """The weights cache folder (``path`` if given)."""
    if path is not None:
        return Path(path)
    if os.environ.get("VITKIT_CACHE"):
        return Path(os.environ["VITKIT_CACHE"]) / "weights"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vitkit" / "weights"


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else the ``VITKIT_OFFLINE`` (or ``HF_HUB_OFFLINE``) environment variable."""
    if offline is not None:
        return offline
    return any(os.environ.get(v, "").lower() in TRUE for v in ("VITKIT_OFFLINE", "HF_HUB_OFFLINE"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path, sha256: str | None) -> bool:
    """Check ``path`` against ``sha256`` once; a ``.sha256`` note beside it saves re-hashing later."""
    if not sha256:
        return True
    note = path.with_name(path.name + ".sha256")
    if note.is_file() and note.read_text().strip() == sha256:
        return True
    if sha256_of(path) != sha256:
        return False
    note.write_text(sha256 + "\n")
    return True


def _progress(total: int | None, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=os.environ.get("VITKIT_NO_PROGRESS", "").lower() in TRUE)


def download(
    url: str,
    filename: str | None = None,
    *,
    sha256: str | None = None,
    cache: str | Path | None = None,
    offline: bool | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """The local path of ``url``'s file in the cache, fetching it first if needed."""
    folder = cache_dir(cache)
    name = filename or url.rsplit("/", 1)[-1]
    path = folder / name
    if path.is_file():
        if _verified(path, sha256):
            return path
        raise ValueError(
            f"cached file {path} does not match its published SHA-256 {sha256}; delete it and run again "
            f"(or fetch {url} by hand into {folder})"
        )
    if is_offline(offline):
        raise FileNotFoundError(
            f"weights file {name!r} is not in the cache and offline mode is on (VITKIT_OFFLINE or offline=True). "
            f"Fetch {url} and save it as {path} (or set VITKIT_CACHE to a folder that holds weights/{name})"
        )
    folder.mkdir(parents=True, exist_ok=True)
    part = path.with_name(name + ".part")
    try:
        _fetch(url, part, name, progress, timeout)
    except (urllib.error.URLError, OSError) as e:
        raise FileNotFoundError(
            f"could not download {name!r} from {url} ({e}). Fetch it by hand and save it as {path}; "
            f"the partial download {part.name} is kept and resumed next time"
        ) from e
    if sha256 and sha256_of(part) != sha256:
        part.unlink()
        raise ValueError(f"download of {name!r} from {url} does not match its SHA-256 {sha256}; the file "
                         "was removed, try again (the server may have sent an error page)")
    os.replace(part, path)
    if sha256:
        path.with_name(name + ".sha256").write_text(sha256 + "\n")
    return path


def _fetch(url: str, part: Path, name: str, progress: bool, timeout: float) -> None:
    """Fetch ``url`` into ``part``, resuming from its current size when the server allows ranges."""
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "vitkit"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the range starts at the end: the file is complete
            return
        raise
    with resp:
        resumed = have and resp.status == 206
        if have and not resumed:
            log.info("server ignored the range request: downloading %s from the start", name)
            have = 0
        length = resp.headers.get("Content-Length")
        total = int(length) + have if length else None
        bar = _progress(total, have, name) if progress else None
        with open(part, "ab" if resumed else "wb") as fh:
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
    if total is not None and part.stat().st_size != total:
        raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes")

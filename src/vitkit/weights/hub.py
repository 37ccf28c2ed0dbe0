"""Downloads of published files through a cache folder: locked, resumable, verified, offline-aware.

The cache is ``$VITKIT_CACHE`` or ``$XDG_CACHE_HOME/vitkit`` (``~/.cache/vitkit``), files under
``weights/``. One process downloads a file at a time (a file lock in ``weights/.locks/``: torchrun
ranks and parallel jobs wait for the first and then read its file). A download is written to
``NAME.part`` and renamed into place only once verified: its size against ``Content-Length`` /
``Content-Range``, its structure (not an HTML error page; a zip container with its central directory,
a safetensors file as long as its header says), the published SHA-256 when there is one and Google
Cloud Storage's ``x-goog-hash`` MD5 when the server sends it. An interrupted download resumes the
``.part`` file with an HTTP range request; a ``.part`` larger than the object (a 416 reply) is
restarted, never installed. A cached file that is damaged is refused with its path and the fix.
Offline (``VITKIT_OFFLINE=1`` or ``offline=True``) nothing is fetched and a missing file raises an
error that says which file to get and where to put it.

Model repos on the Hugging Face Hub go through ``huggingface_hub`` and its own cache instead
(:mod:`vitkit.weights.hf_hub`).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

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
    """``offline`` if given, else the ``VITKIT_OFFLINE`` (or ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``)
    environment variable."""
    if offline is not None:
        return offline
    return any(os.environ.get(v, "").lower() in TRUE for v in ("VITKIT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


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
    """The local path of ``url``'s file in the cache, fetching it first if needed (module docstring).
    Concurrent callers (torchrun ranks, several processes) take a file lock: one downloads, the others
    wait and then read the same file."""
    folder = cache_dir(cache)
    name = filename or url.rsplit("/", 1)[-1]
    path = folder / name
    if path.is_file():
        return _cached(path, url, sha256)
    if is_offline(offline):
        raise FileNotFoundError(
            f"weights file {name!r} is not in the cache and offline mode is on (VITKIT_OFFLINE or offline=True). "
            f"Fetch {url} and save it as {path} (or set VITKIT_CACHE to a folder that holds weights/{name})"
        )
    folder.mkdir(parents=True, exist_ok=True)
    with _lock(folder, name):
        if path.is_file():  # another process finished it while this one waited
            return _cached(path, url, sha256)
        part = path.with_name(name + ".part")
        try:
            facts = _fetch(url, part, name, progress, timeout)
        except (urllib.error.URLError, OSError) as e:
            kept = (f"; the partial download {part.name} ({part.stat().st_size} bytes) is kept and resumed next time"
                    if part.is_file() and part.stat().st_size else "")
            raise FileNotFoundError(
                f"could not download {name!r} from {url} ({e}). Fetch it by hand and save it as {path}{kept}"
            ) from e
        _verify_download(part, url, name, sha256, facts)
        os.replace(part, path)
        if sha256:
            path.with_name(name + ".sha256").write_text(sha256 + "\n")
    return path


@contextlib.contextmanager
def _lock(folder: Path, name: str) -> Iterator[None]:
    """An inter-process lock for one cache file (``.locks/NAME.lock`` beside it, as huggingface_hub
    keeps its own), logged when another process holds it."""
    from filelock import FileLock, Timeout

    locks = folder / ".locks"
    locks.mkdir(exist_ok=True)
    lock = FileLock(str(locks / f"{name}.lock"))
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        log.info("another process is downloading %s; waiting for it", name)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _cached(path: Path, url: str, sha256: str | None) -> Path:
    """A cached file, checked: its published SHA-256 (once), and its structure (a cut zip, an HTML page)."""
    if not _verified(path, sha256):
        raise ValueError(
            f"cached file {path} does not match its published SHA-256 {sha256}; delete it and run again "
            f"(or fetch {url} by hand into {path.parent})"
        )
    why = damaged(path)
    if why:
        raise ValueError(f"cached file {path} is damaged ({why}); delete it (rm '{path}') and run again to fetch it "
                         f"anew, or fetch {url} by hand and save it there")
    return path


def damaged(path: Path, name: str | None = None) -> str | None:
    """Why ``path`` cannot be a whole weights file (None: it can): an HTML page, a zip container
    (``.npz``, torch files) without its central directory (a cut download), a safetensors file shorter
    than its header says. ``name``: the file's own name when ``path`` is its ``.part``. Cheap: reads the
    head and the end of the file only."""
    import zipfile

    with open(path, "rb") as fh:
        head = fh.read(512)
    if _is_html(head):
        return "it is an HTML page, not a weights file"
    low = (name or path.name).lower()
    if low.endswith(".npz") or (zipfile.is_zipfile(path) and low.endswith((".pth", ".pt", ".bin", ".ckpt"))):
        if not zipfile.is_zipfile(path):
            return "an incomplete zip archive: its central directory is missing (a cut download)"
        try:
            with zipfile.ZipFile(path) as z:
                z.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            return f"a damaged zip archive ({e})"
    if low.endswith(".safetensors"):
        return _safetensors_damage(path, head)
    return None


def _safetensors_damage(path: Path, head: bytes) -> str | None:
    import json

    if len(head) < 8:
        return "shorter than a safetensors header"
    n = int.from_bytes(head[:8], "little")
    try:
        with open(path, "rb") as fh:
            fh.seek(8)
            header = json.loads(fh.read(n))
    except ValueError:
        return "its safetensors header is not readable"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    want = 8 + n + max(ends, default=0)
    have = path.stat().st_size
    return None if have == want else f"{have} bytes where its header says {want}"


def _is_html(head: bytes) -> bool:
    text = head.lstrip().lower()
    return text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head"))


def _verify_download(part: Path, url: str, name: str, sha256: str | None, facts: dict) -> None:
    """A finished download before it is installed: not an HTML page, a whole file, and the published
    SHA-256 or the server's MD5 (Google Cloud Storage's ``x-goog-hash``) when there is one. A bad one is
    removed and the error says why."""
    def refuse(why: str) -> None:
        part.unlink(missing_ok=True)
        raise ValueError(f"download of {name!r} from {url} {why}; nothing was cached, try again (or fetch it by hand)")

    with open(part, "rb") as fh:
        head = fh.read(512)
    if "html" in facts.get("content_type", "") or _is_html(head):
        refuse("is an HTML page, not the weights file (the server sent an error or login page)")
    why = damaged(part, name)
    if why:
        size = "" if facts.get("total") else " and the server gave no Content-Length to check its size"
        refuse(f"is incomplete or damaged ({why}{size})")
    if sha256 and sha256_of(part) != sha256:
        refuse(f"does not match its SHA-256 {sha256} (the server may have sent an error page)")
    md5 = facts.get("md5")
    if md5 and _md5_of(part) != md5:
        refuse("does not match the MD5 the server published for it (x-goog-hash)")


def _md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


def _goog_md5(headers) -> str | None:
    """The base64 MD5 of the whole object in Google Cloud Storage's ``x-goog-hash`` (also on range replies)."""
    for item in (headers.get("x-goog-hash") or "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "md5" and value:
            return value
    return None


def _range_total(content_range: str | None) -> int | None:
    """The object's size in a ``Content-Range: bytes a-b/TOTAL`` (or ``bytes */TOTAL``) header."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _fetch(url: str, part: Path, name: str, progress: bool, timeout: float) -> dict:
    """Fetch ``url`` into ``part``, resuming from its current size when the server allows ranges.
    Returns what the server said of the object (``total`` size, ``md5``, ``content_type``)."""
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "vitkit"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the range starts at or past the end of the object
            total = _range_total(e.headers.get("Content-Range"))
            if total == have:
                return {"total": total, "md5": _goog_md5(e.headers), "content_type": ""}
            log.info("%s.part (%d bytes) does not fit the object (%s bytes): downloading from the start",
                     name, have, total if total is not None else "unknown")
            part.unlink()
            return _fetch(url, part, name, progress, timeout)
        raise
    with resp:
        resumed = have and resp.status == 206
        if have and not resumed:
            log.info("server ignored the range request: downloading %s from the start", name)
            have = 0
        length = resp.headers.get("Content-Length")
        total = int(length) + have if length else _range_total(resp.headers.get("Content-Range"))
        facts = {"total": total, "md5": _goog_md5(resp.headers), "content_type": resp.headers.get("Content-Type", "")}
        bar = _progress(total, have, name) if progress else None
        with open(part, "ab" if resumed else "wb") as fh:
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"connection closed after {size} of {total} bytes")
    return facts

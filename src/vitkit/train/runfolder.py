"""What keeps a run folder whole: one writer at a time, no overwriting of files that are not a
vitkit run, no leftover temporary checkpoints, and a resume only on the data the run started with.

- :class:`RunLock`: ``run.lock`` in the folder, with the holder's pid, host and command. A second
  process is refused with a message naming the holder; a lock whose holder is dead (same host: the
  pid no longer runs; another host: the holder stopped refreshing it) is taken over with a warning.
- :func:`check_new_run_folder`: a new run goes only into a missing or empty folder, or into a
  vitkit run folder of the same task and recipe.
- :func:`remove_stale_temps`: the ``.checkpoint-*.tmp<pid>`` files that a process killed during a
  save leaves (each as large as a checkpoint), when that process no longer runs.
- :func:`data_fingerprint` / :func:`check_same_data`: per split the number of items, a hash of the
  sorted item names and the class names, recorded at the start and compared on resume.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import RunFolderBusy

log = logging.getLogger("vitkit.train")

LOCK_NAME = "run.lock"
HEARTBEAT_S = 60.0     # the holder refreshes the lock's mtime this often
STALE_AFTER_S = 600.0  # a lock from another host not refreshed for this long belongs to a dead run

_held: dict[Path, "RunLock"] = {}  # the locks this process holds, by folder


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a process of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _looks_like_ours(pid: int) -> bool:
    """False when /proc shows that ``pid`` is now some other program (a reused pid), else True."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True
    return any(k in cmd for k in ("python", "vitkit", "torchrun"))


class RunLock:
    """The lock of run folder ``folder`` (created when missing). :meth:`acquire` takes it or raises
    :class:`RunFolderBusy`; :meth:`release` removes it. Re-entrant within one process (a notebook
    that builds a second Trainer on the same folder takes it over from the first)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def _holder_alive(self, holder: dict[str, Any]) -> tuple[bool, str]:
        """(alive, why it is judged so)."""
        pid, host = int(holder.get("pid", -1)), str(holder.get("host", ""))
        if host == socket.gethostname():
            if pid == os.getpid():
                return False, "this process's own pid, left by an earlier run of it"
            if not pid_alive(pid):
                return False, "that process no longer runs"
            if not _looks_like_ours(pid):
                return False, "that pid now belongs to another program"
            return True, "it is running"
        try:
            age = time.time() - self.path.stat().st_mtime
        except OSError:
            return False, "the lock file is gone"
        if age > STALE_AFTER_S:
            return False, f"it was last refreshed {age / 60:.0f} min ago (a live run refreshes it every minute)"
        return True, f"it was refreshed {age:.0f} s ago"

    def acquire(self) -> "RunLock":
        folder = self.folder.resolve()
        if folder in _held:  # this process holds it already (an earlier Trainer on this folder)
            _held[folder]._stop_heartbeat()
            _held[folder].held = False
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if folder in _held:
                    self._remove()
                    del _held[folder]
                    continue
                holder = self._read()
                if holder is None:  # being written this instant, or damaged: wait a moment, then take it
                    try:
                        young = time.time() - self.path.stat().st_mtime < 5
                    except OSError:
                        continue
                    if young:
                        time.sleep(0.1)
                        continue
                    log.warning("taking over the unreadable lock file %s", self.path)
                    self._remove()
                    continue
                alive, why = self._holder_alive(holder)
                if alive:
                    raise RunFolderBusy(
                        f"{self.folder} is in use by another run: pid {holder.get('pid')} on host "
                        f"{holder.get('host')} (started {holder.get('started', '?')}; {why}; command: "
                        f"{holder.get('command', '?')}). Two runs writing one folder corrupt it. Wait for that run to "
                        f"finish, stop it, or choose another --out; if it is certainly gone, delete {self.path}.")
                log.warning("taking over the stale lock %s of pid %s on host %s (started %s): %s",
                            self.path, holder.get("pid"), holder.get("host"), holder.get("started", "?"), why)
                self._remove()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv)[:500]}, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            _held[folder] = self
            self._start_heartbeat()
            return self
        raise RunFolderBusy(f"could not take the lock {self.path}: other processes keep replacing it; "
                            f"is another run starting in {self.folder}? Choose another --out.")

    def release(self) -> None:
        if not self.held:
            return
        self._stop_heartbeat()
        self.held = False
        holder = self._read()
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self._remove()
        _held.pop(self.folder.resolve(), None)

    def _remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _start_heartbeat(self) -> None:
        self._stop.clear()

        def beat() -> None:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    os.utime(self.path)
                except OSError:
                    pass

        self._beat = threading.Thread(target=beat, name="vitkit-run-lock", daemon=True)
        self._beat.start()

    def _stop_heartbeat(self) -> None:
        self._stop.set()


def read_run_doc(folder: Path) -> dict[str, Any] | None:
    """config.json of ``folder`` when vitkit wrote it (it has a ``resolved`` record), else None."""
    try:
        doc = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("resolved"), dict) and "vitkit" in doc["resolved"]:
        return doc
    return None


def check_new_run_folder(folder: Path, task: str, recipe: str) -> None:
    """Refuse to start a new run in ``folder`` unless it is missing, empty (but for our lock and
    hidden files such as .DS_Store, which a run never writes), or a vitkit run folder of the same
    task and recipe (whose files the new run then replaces; its checkpoint-best.pt is removed so
    that it is never taken for the new run's)."""
    if not folder.is_dir():
        return
    entries = sorted(e.name for e in folder.iterdir() if e.name != LOCK_NAME and not e.name.startswith("."))
    if not entries:
        return
    doc = read_run_doc(folder)
    if doc is None:
        shown = ", ".join(entries[:5]) + (f", … ({len(entries)} entries)" if len(entries) > 5 else "")
        why = ("its config.json was not written by vitkit" if "config.json" in entries else "it has no config.json")
        raise ValueError(f"--out {folder} is not empty and is not a vitkit run folder ({why}; it holds {shown}); a new "
                         f"run would overwrite config.json and metrics.jsonl there. Choose another --out (a new or "
                         f"empty folder), or move those files away.")
    was_task = doc["resolved"].get("task", "classification")
    was_recipe = doc["resolved"].get("recipe", doc.get("recipe", ""))
    if (was_task, was_recipe) != (task, recipe):
        raise ValueError(f"--out {folder} holds a vitkit {was_task} run of recipe {was_recipe!r}; this is a {task} "
                         f"run of recipe {recipe!r}, and starting it there would mix the two runs' files. Choose "
                         f"another --out, or continue that run with --resume.")
    old = [n for n in entries if n in ("checkpoint-last.pt", "checkpoint-best.pt")]
    if old:
        log.warning("starting a new run in %s over an earlier run of the same recipe: its %s are replaced",
                    folder, " and ".join(old))
        (folder / "checkpoint-best.pt").unlink(missing_ok=True)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete ``.checkpoint-*.tmp<pid>`` files whose writing process no longer runs; returns them."""
    removed = []
    for p in sorted(folder.glob(".checkpoint-*.tmp*")):
        pid_text = p.name.rsplit(".tmp", 1)[-1]
        pid = int(pid_text) if pid_text.isdigit() else -1
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            size = p.stat().st_size
            p.unlink()
        except OSError:
            continue
        log.info("removed %s (%.1f MB), a checkpoint write that process %s left unfinished", p, size / 1e6, pid)
        removed.append(p)
    return removed


# ----------------------------------------------------------------------------- data fingerprint
def _item_names(ds: Any) -> list[str] | None:
    """A name per item (its file, as ``parent/name``: the data may move), when ``ds`` can say."""
    n = len(ds)
    if callable(getattr(ds, "source", None)):
        names = [ds.source(i) for i in range(n)]
    elif isinstance(getattr(ds, "items", None), Sequence) and len(ds.items) == n:
        names = [str(it[0] if isinstance(it, (tuple, list)) else it) for it in ds.items]
    elif isinstance(getattr(ds, "images", None), Sequence) and len(ds.images) == n:
        names = [str(it) for it in ds.images]
    else:
        return None
    return ["/".join(Path(s).parts[-2:]) for s in names]


def _class_names(ds: Any) -> list[str]:
    for attr in ("classes", "class_names"):
        v = getattr(ds, attr, None)
        if v:
            return [str(c) for c in v]
    spec = getattr(ds, "spec", None)
    return [str(c) for c in getattr(spec, "class_names", ())] if spec is not None else []


def data_fingerprint(ds: Any) -> dict[str, Any]:
    """``count``, ``classes`` and (when the items are named) ``files_sha256`` of the sorted names."""
    fp: dict[str, Any] = {"count": len(ds), "classes": _class_names(ds)}
    names = _item_names(ds)
    if names is not None:
        h = hashlib.sha256()
        for s in sorted(names):
            h.update(s.encode("utf-8", "replace") + b"\0")
        fp["files_sha256"] = h.hexdigest()
    return fp


def check_same_data(saved: dict[str, Any] | None, now: dict[str, Any], checkpoint: Path) -> None:
    """Refuse a resume whose data differ from the run's start (``saved``: the checkpoint's record;
    nothing to compare for checkpoints that predate it)."""
    if not isinstance(saved, dict):
        return
    problems = []
    for split, a in saved.items():
        b = now.get(split)
        if not isinstance(a, dict) or not isinstance(b, dict):
            continue
        if a.get("classes") != b.get("classes"):
            added = [c for c in b["classes"] if c not in a["classes"]]
            gone = [c for c in a["classes"] if c not in b["classes"]]
            parts = ([f"classes {added} were added"] if added else []) + ([f"classes {gone} are gone"] if gone else [])
            problems.append(f"the {split} split's classes changed ({'; '.join(parts) or 'their order changed'}: "
                            f"{len(a['classes'])} then, {len(b['classes'])} now)")
        elif a.get("count") != b.get("count"):
            problems.append(f"the {split} split had {a['count']} images when the run started and has {b['count']} now")
        elif a.get("files_sha256") and b.get("files_sha256") and a["files_sha256"] != b["files_sha256"]:
            problems.append(f"the {split} split's files changed (still {b['count']} images, but other file names)")
    if problems:
        raise ValueError(f"cannot resume from {checkpoint}: {'; '.join(problems)}. The run's steps per epoch, "
                         f"schedule, data order and classifier head were fixed from the data it started with. Put the "
                         f"data back as it was, or start a new run with another --out (weights={checkpoint} starts "
                         f"it from what this run learned).")

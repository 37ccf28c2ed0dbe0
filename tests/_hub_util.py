"""A Hugging Face Hub cache folder laid out by hand, exactly as ``huggingface_hub`` writes it, so
that vitkit, timm and transformers read the same files with no network:

    HF_HUB_CACHE/models--org--name/refs/main              the commit hash of ``main``
    HF_HUB_CACHE/models--org--name/blobs/<sha256>         each file's bytes (named by its hash)
    HF_HUB_CACHE/models--org--name/snapshots/<commit>/F   relative symlinks to the blobs
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import pytest


def lay_out_repo(cache: Path, repo_id: str, files: Mapping[str, bytes | str | Path | dict[str, Any]],
                 revision: str = "main", commit: str | None = None) -> Path:
    """Put ``files`` (name → bytes, text, a file to copy, or a dict written as JSON) into ``cache`` as
    the snapshot of ``repo_id`` at ``revision``; returns the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    datas: dict[str, bytes] = {}
    for name, value in files.items():
        if isinstance(value, dict):
            value = json.dumps(value, indent=2)
        if isinstance(value, Path):
            value = value.read_bytes()
        datas[name] = value.encode() if isinstance(value, str) else value
    commit = commit or hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in datas.items()))
                                    .encode()).hexdigest()
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in datas.items():
        sha = hashlib.sha256(data).hexdigest()
        (blobs / sha).write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blobs / sha, link.parent))
    if revision != commit:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / revision).write_text(commit)  # huggingface_hub writes no newline
    return snap


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, offline: the environment variables (read by vitkit at each call) and
    huggingface_hub's constants (read once at its import, by timm and transformers) both point at it."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VITKIT_NO_PROGRESS", "1")
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path / "vitkit"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    return cache

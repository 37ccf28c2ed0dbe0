"""Checkpoints written atomically, and the RNG states that make a resumed run exact."""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .distributed import gather_objects

log = logging.getLogger("vitkit.train")


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, flush to disk, then rename over
    ``path``: a crash at any moment leaves either the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a vitkit checkpoint on the CPU (tensors and plain Python values only: ``weights_only``)."""
    from ..weights.io import load_torch_file  # a damaged file is named, with the run's other checkpoints

    return load_torch_file(path)


def get_rng_state() -> dict[str, Any]:
    """The states of every generator the loop draws from: torch (CPU, CUDA), NumPy, Python."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def rng_states(state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every process's generator states (``state``, or :func:`get_rng_state` now) in rank order, for
    a checkpoint: dropout, drop-path, Mixup, proposal sampling then draw on after a resume exactly as
    in the uninterrupted run. A collective under torchrun: every process calls it."""
    return gather_objects(state or get_rng_state())


def restore_rng(states: Any, rank: int, world_size: int) -> None:
    """Put back this process's state from what :func:`rng_states` saved."""
    if not isinstance(states, list) or not states:
        if rank == 0:
            log.warning("the checkpoint predates saved generator states: data order and augmentation "
                        "continue exactly, other random draws (drop-path, sampling) do not")
        return
    if len(states) != world_size and rank == 0:
        log.warning("resuming %d processes from a %d-process checkpoint: data order is kept, random draws are not",
                    world_size, len(states))
    set_rng_state(states[rank % len(states)])

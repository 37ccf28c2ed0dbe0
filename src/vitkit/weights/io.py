"""Reading checkpoint files of every supported kind, and writing vitkit's own (safetensors +
metadata) and the official layouts (so other tools can read what vitkit trained)."""
from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .formats import get_format
from .formats.table import from_vitkit

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "model_state", "module")


def _as_tensor(v: Any) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    return torch.from_numpy(np.ascontiguousarray(np.asarray(v)))


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint object: a state dict, or one nested under ``model`` (official
    Swin), ``state_dict``, …; a ``module.`` prefix (DistributedDataParallel) is removed."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in inner.values()):
            obj = inner
            break
    state = {str(k): _as_tensor(v) for k, v in obj.items() if isinstance(v, (torch.Tensor, np.ndarray))}
    if not state:
        raise ValueError(f"the checkpoint holds no tensors (top-level keys: {', '.join(map(str, list(obj)[:8]))})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata (vitkit files; ``{}`` otherwise) of a ``.npz``, ``.safetensors`` or
    torch file (``.pth``, ``.pt``, ``.bin``, ``.ckpt``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    name = path.name.lower()
    if name.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:  # object arrays (pickles) refused by numpy
                return {k: _as_tensor(z[k]) for k in z.files}, {}
        except Exception as e:
            raise DamagedFileError(damaged_message(path, e, "a .npz archive")) from None
    if name.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                return {k: f.get_tensor(k) for k in f.keys()}, meta
        except Exception as e:
            raise DamagedFileError(damaged_message(path, e, "a safetensors file")) from None
    obj = load_torch_file(path)
    return unwrap_state_dict(obj), checkpoint_metadata(obj)


class DamagedFileError(ValueError):
    """A checkpoint file that cannot be read: truncated, empty, or not of the format its name says."""


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def damaged_message(path: Path, error: BaseException, kind: str) -> str:
    """``path`` is damaged: what was found, the likely cause, and where a good copy may be (for a
    run's ``checkpoint-last.pt``, the other checkpoints of the run folder)."""
    path = Path(path)
    size = path.stat().st_size
    what = "it is empty (0 bytes)" if size == 0 else f"{size:,} bytes that are not {kind} ({_first_line(error)})"
    msg = (f"{path} is damaged: {what}. It was probably cut short (a save or copy interrupted, a disk that "
           "filled up, an incomplete download) or is another kind of file under this name")
    others = sorted(p.name for p in path.parent.glob("checkpoint-*.pt") if p != path and p.stat().st_size > 0)
    if path.name.startswith("checkpoint-last") and others:
        msg += (f". The run folder also holds {', '.join(others)}: evaluate it, or start a new run from its weights "
                f"(weights={path.parent / others[0]}); a damaged checkpoint-last.pt cannot be resumed")
    else:
        msg += "; download or copy it again, or use another checkpoint"
    return msg


def load_torch_file(path: str | Path) -> Any:
    """``torch.load`` with tensors and plain Python values only (``weights_only``: nothing in the
    file is executed). A file that holds other Python objects is refused with the advice to load it
    yourself if you trust it; a truncated, empty or garbage file is named as damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e) and "Unsupported class" not in str(e):
            raise DamagedFileError(damaged_message(path, e, "a torch.save file")) from None
        globs = re.findall(r"GLOBAL ([\w.]+)", str(e))
        raise ValueError(  # pickled Python objects besides tensors: refuse, do not execute them
            f"{path} is not a plain tensor checkpoint: it holds pickled Python objects"
            f"{f' ({globs[0]})' if globs else ''}, which are not loaded because unpickling them could run code. "
            "If you trust the file, load it with torch.load(path, weights_only=False) and pass the state "
            "dict (or its 'model' entry) to vitkit.load_weights") from None
    except Exception as e:  # zip central directory missing, EOF, a bad key: the bytes are not a checkpoint
        raise DamagedFileError(damaged_message(path, e, "a torch.save file")) from None


def checkpoint_metadata(obj: Any) -> dict[str, str]:
    """A vitkit training checkpoint's record (``model_name``, ``model_kwargs``, ``classes``,
    ``preprocess``) in the form of a vitkit file's metadata (``format=vitkit``, ``model``,
    ``model_kwargs``, ``labels``, ``pretrained_cfg``, JSON values); ``{}`` for any other object."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model_name"), str):
        return {}
    meta = {"format": "vitkit", "model": obj["model_name"],
            "model_kwargs": json.dumps(dict(obj.get("model_kwargs") or {}), default=repr)}
    if obj.get("classes"):
        meta["labels"] = json.dumps([str(c) for c in obj["classes"]])
    if isinstance(obj.get("preprocess"), Mapping):
        meta["pretrained_cfg"] = json.dumps(dict(obj["preprocess"]))
    return meta


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _publish(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` over ``path`` with the mode a plain ``open`` would give (0666 less
    the umask: 0644 usually), not mkstemp's private 0600."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def save_vitkit(state: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write vitkit safetensors: tensors plus ``format=vitkit`` and ``metadata`` (JSON-encoded
    values), atomically (a temporary file renamed into place)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": "vitkit"}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    tmp = _atomic_target(path)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=meta)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def decode_metadata(meta: Mapping[str, str]) -> dict[str, Any]:
    """JSON values of a vitkit file's metadata back to Python (strings stay strings)."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except (TypeError, ValueError):
            out[k] = v
    return out


def save_official_vit_npz(model: nn.Module, path: str | Path) -> Path:
    """Write a vitkit ViT (plain or hybrid) in Google's ``.npz`` layout (readable by the official JAX
    code and by timm's npz loader)."""
    fmt = get_format("official_vit_npz")
    heads = model.init_kwargs["num_heads"]  # the per-head kernel layouts need it
    arrays = from_vitkit(model.state_dict(), fmt.rules, {"num_heads": heads})
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: v.detach().float().cpu().numpy() for k, v in arrays.items()})
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_official_swin_pth(model: nn.Module, path: str | Path) -> Path:
    """Write a vitkit Swin in Microsoft's ``.pth`` layout (``{"model": state_dict}``, merging at the
    end of stages 0–2, no buffers: readers recompute them)."""
    fmt = get_format("official_swin_pth")
    state = from_vitkit(model.state_dict(), fmt.rules)
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        torch.save({"model": {k: v.detach().cpu() for k, v in state.items()}}, tmp)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

"""What architecture a vitkit-named state dict describes, and the registered model names that fit it
(for ``vitkit convert`` without ``--model`` and for clear mismatch errors).

The architectures answer for themselves (:class:`vitkit.models.base.ModelBase`): each class of the
registry's rows reads its own keys (``config_from_state_dict``), judges its rows (``row_fits``) and
describes what it read (``describe_config``); nothing here knows an architecture's key names.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..models.base import ModelBase
from ..registry import architectures, get_entry, list_models


def _classes() -> list[type[ModelBase]]:
    return [b for b in architectures() if isinstance(b, type) and issubclass(b, ModelBase)]


def infer_architecture(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What the first registered architecture that recognises ``state`` reads off it: its
    ``config_from_state_dict`` info (``kwargs`` sizes, ``num_classes``, native geometry) plus
    ``architecture`` (the class). An unrecognised state dict gives ``architecture=None``, ``kwargs={}``
    and the head's class count."""
    for cls in _classes():
        info = cls.config_from_state_dict(state)
        if info is not None:
            return {**info, "architecture": cls}
    head = state.get("head.weight")
    return {"architecture": None, "kwargs": {}, "num_classes": int(head.shape[0]) if head is not None else 0,
            "keys": sorted(state)[:5]}


def candidate_models(info: Mapping[str, Any]) -> list[str]:
    """Registered names whose row can hold the weights ``info`` describes (the architecture's
    ``row_fits``); those at the checkpoint's own resolution first."""
    cls = info.get("architecture")
    if cls is None:
        return []
    exact, other = [], []
    for name in list_models():
        entry = get_entry(name)
        if entry.builder is not cls:
            continue
        fits = cls.row_fits(entry.kwargs, info)
        if fits is not None:
            (exact if fits else other).append(name)
    return exact + other


def describe(info: Mapping[str, Any]) -> str:
    """A one-line description of ``info`` for error messages."""
    cls = info.get("architecture")
    if cls is None:
        return f"no vitkit architecture (first keys: {', '.join(info.get('keys', [])) or 'none'})"
    return cls.describe_config(info)

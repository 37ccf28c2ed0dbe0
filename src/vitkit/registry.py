"""Model names → variant rows: data only.

Each architecture file registers its variants as rows (name, builder class, constructor arguments,
preprocessing) with :func:`register` when it is imported; :mod:`vitkit.build` (imported by
``import vitkit``) imports the architectures and turns a row into a model, with pretrained weights
when asked. This module imports neither the models nor the weights.

``vitkit.registry.create_model`` still works for older code: :mod:`vitkit.build` places its
``create_model`` here when it is imported (``import vitkit`` does that first).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., Any]  # the architecture class (a models.base.ModelBase subclass)
    kwargs: dict[str, Any]
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    family: str = ""


_REGISTRY: dict[str, ModelEntry] = {}
_LOADED = False


def _rows() -> dict[str, ModelEntry]:
    """The table, with vitkit's architectures imported first (they register their rows on import):
    a lookup gives the same answer however the caller got here (``import vitkit`` is lazy)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        import importlib

        importlib.import_module("vitkit.models")
    return _REGISTRY


def register(name: str, builder: Callable[..., Any], kwargs: dict[str, Any],
             pretrained_cfg: dict[str, Any] | None = None, family: str = "") -> None:
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(name, builder, dict(kwargs), dict(pretrained_cfg or {}), family)


def is_registered(name: str) -> bool:
    return name in _rows()


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"swin_*"``), sorted."""
    return sorted(n for n in _rows() if fnmatch.fnmatch(n, pattern))


def architectures() -> list[Callable[..., Any]]:
    """The distinct builders of the registered rows, in registration order."""
    return list(dict.fromkeys(e.builder for e in _rows().values()))


def _similar(name: str, n: int = 8) -> list[str]:
    """Registered names closest to a mistyped one: those it is a prefix of (``vit_huge`` →
    ``vit_huge_patch14_224``, …), else the closest spellings, else those sharing its family word."""
    import difflib

    names = sorted(_rows())
    hits = [m for m in names if m.startswith(name)]
    if not hits:
        hits = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    if not hits:
        hits = [m for m in names if m.split("_")[0] == name.split("_")[0]]
    return hits[:n]


def get_entry(name: str) -> ModelEntry:
    if name not in _rows():
        close = _similar(name)
        hint = (f"Similar names: {', '.join(close)}." if close else
                "vitkit has ViT (vit_*), hybrid ResNet+ViT (vit_*_r50_*) and Swin (swin_*) models.")
        raise ValueError(f"unknown model {name!r}. {hint} See vitkit.list_models() (or `vitkit models`) for all of them.")
    return _REGISTRY[name]

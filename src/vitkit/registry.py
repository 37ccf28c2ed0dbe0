"""Model names → variant rows → builders.

Each architecture file registers its variants as data (a table of rows) with :func:`register`;
``create_model`` looks the name up, merges the row with the caller's overrides and builds.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn as nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    kwargs: dict[str, Any]
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    family: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, builder: Callable[..., nn.Module], kwargs: dict[str, Any],
             pretrained_cfg: dict[str, Any] | None = None, family: str = "") -> None:
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(name, builder, dict(kwargs), dict(pretrained_cfg or {}), family)


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (registers the architectures on import)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"swin_*"``), sorted."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def _similar(name: str, n: int = 8) -> list[str]:
    """Registered names closest to a mistyped one: those it is a prefix of (``vit_huge`` →
    ``vit_huge_patch14_224``, …), else the closest spellings, else those sharing its family word."""
    import difflib

    names = sorted(_REGISTRY)
    hits = [m for m in names if m.startswith(name)]
    if not hits:
        hits = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    if not hits:
        hits = [m for m in names if m.split("_")[0] == name.split("_")[0]]
    return hits[:n]


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = _similar(name)
        hint = (f"Similar names: {', '.join(close)}." if close else
                "vitkit has ViT (vit_*), hybrid ResNet+ViT (vit_*_r50_*) and Swin (swin_*) models.")
        raise ValueError(f"unknown model {name!r}. {hint} See vitkit.list_models() (or `vitkit models`) for all of them.")
    return _REGISTRY[name]


def create_model(
    name: str,
    *,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model.

    ``pretrained`` is ``False``, ``True`` (the default tag) or a tag name; the weights are fetched
    (or found in the cache) and loaded with the head replaced when ``num_classes`` differs. timm's
    ``"name.tag"`` spelling names the tag too (``"vit_base_patch16_224.augreg_in21k"``): with
    ``pretrained=True`` its weights, without them a model shaped as that tag's (classes, GELU).
    ``img_size`` and any constructor argument (``drop_path_rate=0.1``, ``window_size=12``, …)
    override the variant's row.
    """
    if name not in _REGISTRY and "." in name:
        _ensure_loaded()
        base, tag_name = name.split(".", 1)
        if base in _REGISTRY:
            from .weights.pretrained import get_pretrained

            tag = get_pretrained(base, tag_name)  # a clear error for an unknown tag
            if isinstance(pretrained, str) and pretrained != tag_name:
                raise ValueError(f"{name!r} names the tag {tag_name!r} but pretrained={pretrained!r}; give one of them")
            if pretrained:
                return create_model(base, pretrained=tag_name, num_classes=num_classes, img_size=img_size, **overrides)
            return create_model(base, num_classes=tag.num_classes if num_classes is None else num_classes,
                                img_size=img_size, **{**tag.model_kwargs, **overrides})
    entry = get_entry(name)
    kwargs = dict(entry.kwargs)
    kwargs.update(overrides)
    if img_size is not None:
        kwargs["img_size"] = img_size
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if pretrained:
        from .weights.pretrained import build_pretrained

        return build_pretrained(entry, kwargs, tag=pretrained)
    model = entry.builder(**kwargs)
    model.pretrained_cfg = row_pretrained_cfg(entry, model)
    model.model_name = name
    return model


def row_pretrained_cfg(entry: ModelEntry, model: nn.Module) -> Any:
    """The preprocessing record of ``entry``'s row for a model built from it (input size as built)."""
    from .models.base import PretrainedCfg

    cfg = PretrainedCfg.from_dict(dict(entry.pretrained_cfg, architecture=entry.name), strict=True)
    size = getattr(model, "img_size", None)
    if size is not None:
        cfg.input_size = (cfg.input_size[0], *size)
    return cfg

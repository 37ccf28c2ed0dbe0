"""Checkpoint formats: one module each, a key table plus named transforms (see :mod:`.table`).

``detect_format`` picks the format from the key names (and a vitkit file's metadata); the order of
``FORMATS`` is the order of the checks, most specific first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from .table import Converted, Rule, to_vitkit


@dataclass(frozen=True)
class Format:
    """A checkpoint layout: how to recognise it and how its keys map onto vitkit's."""

    name: str
    description: str
    detect: Callable[[set[str]], bool]
    rules: list[Rule]
    ignore: Mapping[str, str] = field(default_factory=dict)  # source pattern → why it is dropped
    prepare: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = lambda s: s
    passthrough: bool = False  # names are vitkit's already: no table, the model judges every key
    # constructor arguments files of this layout were trained with, given the file's (source) key
    # names: {argument: (value, why)}; a build uses them, load_weights notes a model built otherwise
    implies: Callable[[set[str]], Mapping[str, tuple[Any, str]]] = lambda keys: {}

    def convert(self, state: Mapping[str, torch.Tensor]) -> Converted:
        """Source-named tensors → vitkit-named tensors (plus what was dropped and what is unknown)."""
        if self.passthrough:
            return Converted(state=dict(state))
        return to_vitkit(self.prepare(dict(state)), self.rules, self.ignore)


def _formats() -> list[Format]:
    from . import official_swin_pth, official_vit_npz, timm, torchvision, transformers, vitkit

    return [vitkit.FORMAT, official_vit_npz.FORMAT, transformers.FORMAT, torchvision.FORMAT,
            official_swin_pth.FORMAT, timm.FORMAT]


FORMAT_NAMES = ("vitkit", "official_vit_npz", "transformers", "torchvision", "official_swin_pth", "timm")


def get_format(name: str) -> Format:
    for f in _formats():
        if f.name == name:
            return f
    raise ValueError(f"unknown checkpoint format {name!r}; choose one of {', '.join(FORMAT_NAMES)}")


def detect_format(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Format:
    """The format of a state dict, from its key names (a vitkit file also says so in its metadata)."""
    if metadata and metadata.get("format") == "vitkit":
        return get_format("vitkit")
    keys = set(state)
    for f in _formats():
        if f.detect(keys):
            return f
    first = ", ".join(sorted(keys)[:8]) or "(no tensors)"
    raise ValueError(
        f"cannot tell the checkpoint's format from its keys (first: {first}). Supported: "
        "official ViT .npz, official Swin .pth, timm, torchvision, transformers and vitkit safetensors "
        "for ViT, hybrid R50+ViT and Swin; pass fmt=NAME to load_weights if the file is one of these "
        f"with unusual names ({', '.join(FORMAT_NAMES)})"
    )


__all__ = ["Format", "FORMAT_NAMES", "detect_format", "get_format", "Converted", "Rule"]

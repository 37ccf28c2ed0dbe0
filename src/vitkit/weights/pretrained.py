"""Pretrained tags: published files, their preprocessing and labels (filled in by the weights work)."""
from __future__ import annotations

from typing import Any


def build_pretrained(entry: Any, kwargs: dict[str, Any], tag: bool | str) -> Any:
    raise ValueError(
        f"no pretrained weights are registered for {entry.name!r} yet; build the model with "
        "pretrained=False and load a file with vitkit.load_weights(model, PATH)"
    )

"""Whole-file operations behind ``vitkit convert`` and ``vitkit predict``: any supported checkpoint →
vitkit safetensors with metadata, and a model built around a file or a tag.

These sit above :mod:`vitkit.build` (they build models); the rest of :mod:`vitkit.weights` sits below it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..build import build_from_file, create_model
from .io import save_vitkit
from .load import LoadReport, read_weights

CFG_KEYS = ("mean", "std", "input_size", "crop_pct", "interpolation", "tag", "url")


def convert_checkpoint(src: str | Path, dst: str | Path, *, model: str | None = None,
                       fmt: str | None = None, **overrides: Any) -> tuple[LoadReport, str]:
    """Read ``src`` (any supported format), build the vitkit model it fits (``model`` or inferred,
    with constructor ``overrides`` for files that do not say their sizes), load it strictly, and
    write ``dst`` as vitkit safetensors with metadata (model name and complete constructor
    arguments, preprocessing, labels, source). Returns the load report and the model name."""
    weights = read_weights(src, fmt)  # read → detect → convert, once
    net = build_from_file(weights, model, **overrides)
    cfg = net.pretrained_cfg
    metadata: dict[str, Any] = {
        "model": net.model_name,
        "model_kwargs": dict(net.init_kwargs),  # every constructor argument: rebuilds this network
        "pretrained_cfg": {k: cfg[k] for k in CFG_KEYS if cfg.get(k) is not None},
        "source": Path(src).name,
        "source_format": weights.format,
    }
    if cfg.get("labels"):
        metadata["labels"] = list(cfg["labels"])
    save_vitkit(net.state_dict(), dst, metadata)
    return net.load_report, net.model_name


def model_with_weights(name: str, weights: str | Path | None = None) -> nn.Module:
    """``name`` with ``weights``: ``None`` (the default tag), a checkpoint path, or a tag name."""
    if weights is None:
        return create_model(name, pretrained=True)
    if Path(weights).is_file():
        return build_from_file(weights, name)
    text = str(weights)
    if "/" in text or "\\" in text or Path(text).suffix in (".npz", ".pth", ".pt", ".bin", ".safetensors"):
        raise FileNotFoundError(f"weights file {text!r} does not exist")
    return create_model(name, pretrained=text)

"""Whole-file operations behind ``vitkit convert`` and ``vitkit predict``: any supported checkpoint →
vitkit safetensors with metadata, and a model built around a file or a tag."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..registry import create_model, get_entry
from .formats import detect_format, get_format
from .inspect import candidate_models, describe, infer_architecture
from .io import read_checkpoint, save_vitkit
from .load import LoadReport
from .pretrained import build_from_file

CFG_KEYS = ("mean", "std", "input_size", "crop_pct", "interpolation", "tag", "url")


def model_kwargs(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments a file must carry to rebuild ``model``'s head and behaviour."""
    kw: dict[str, Any] = {"num_classes": int(model.num_classes)}
    if isinstance(getattr(model, "pre_logits", None), nn.Sequential):
        kw["representation_size"] = int(model.head_in_features)
    blocks = getattr(model, "blocks", None)
    if blocks is not None and getattr(blocks[0].mlp.act, "approximate", "none") == "tanh":
        kw["act"] = "gelu_tanh"
    return kw


def convert_checkpoint(src: str | Path, dst: str | Path, *, model: str | None = None,
                       fmt: str | None = None) -> tuple[LoadReport, str]:
    """Read ``src`` (any supported format), build the vitkit model it fits (``model`` or inferred),
    load it strictly, and write ``dst`` as vitkit safetensors with metadata (model name and
    arguments, preprocessing, labels, source). Returns the load report and the model name."""
    raw, meta = read_checkpoint(src)
    f = get_format(fmt) if fmt else detect_format(raw, meta)
    if model is None:
        info = infer_architecture(f.convert(raw).state)
        fits = candidate_models(info)
        if not fits:
            raise ValueError(f"{src} holds {describe(info)}, which matches no registered model; pass --model NAME")
        model = fits[0]
    entry = get_entry(model)
    net = build_from_file(entry, dict(entry.kwargs), src, fmt=f.name)
    cfg = net.pretrained_cfg
    metadata: dict[str, Any] = {
        "model": model,
        "model_kwargs": model_kwargs(net),
        "pretrained_cfg": {k: cfg[k] for k in CFG_KEYS if cfg.get(k) is not None},
        "source": Path(src).name,
        "source_format": f.name,
    }
    if cfg.get("labels"):
        metadata["labels"] = list(cfg["labels"])
    save_vitkit(net.state_dict(), dst, metadata)
    return net.load_report, model


def model_with_weights(name: str, weights: str | Path | None = None) -> nn.Module:
    """``name`` with ``weights``: ``None`` (the default tag), a checkpoint path, or a tag name."""
    if weights is None:
        return create_model(name, pretrained=True)
    if Path(weights).is_file():
        entry = get_entry(name)
        return build_from_file(entry, dict(entry.kwargs), weights)
    text = str(weights)
    if "/" in text or "\\" in text or Path(text).suffix in (".npz", ".pth", ".pt", ".bin", ".safetensors"):
        raise FileNotFoundError(f"weights file {text!r} does not exist")
    return create_model(name, pretrained=text)

"""The evaluation preprocessing a checkpoint was published with, and top-k classification.

Resize the shorter side to ``size / crop_pct`` with the checkpoint's interpolation, centre-crop to
``size``, scale to [0, 1], normalise with its mean and std (ViT: 0.5, i.e. inputs in [-1, 1]; Swin:
ImageNet statistics). Using another checkpoint's statistics costs accuracy quietly; this reads them
from ``model.pretrained_cfg``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

INTERPOLATION = ("nearest", "bilinear", "bicubic")


def eval_transform(cfg: Mapping[str, Any]) -> Callable[[Any], torch.Tensor]:
    """A callable PIL image → (C, H, W) tensor following ``cfg`` (``input_size``, ``crop_pct``,
    ``interpolation``, ``mean``, ``std``)."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    chans, h, w = cfg.get("input_size", (3, 224, 224))
    crop_pct = float(cfg.get("crop_pct", 1.0))
    interp = cfg.get("interpolation", "bicubic")
    if interp not in INTERPOLATION:
        raise ValueError(f"interpolation={interp!r} is not supported; choose one of {', '.join(INTERPOLATION)}")
    scale = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    resize = T.Resize(scale[0] if h == w else scale, interpolation=InterpolationMode(interp))
    mode = "L" if chans == 1 else "RGB"
    return T.Compose([
        T.Lambda(lambda im: im.convert(mode)),
        resize,
        T.CenterCrop((h, w)),
        T.ToTensor(),
        T.Normalize(cfg.get("mean", (0.5,) * chans), cfg.get("std", (0.5,) * chans)),
    ])


def require_classifier(model: nn.Module) -> None:
    """Refuse a model without a classifier (``num_classes=0``: features only) for predictions, saying why."""
    if getattr(model, "num_classes", None) != 0:
        return
    cfg = getattr(model, "pretrained_cfg", None)
    source = (cfg.get("tag") or cfg.get("source")) if cfg is not None else None
    name = source or getattr(model, "model_name", type(model).__name__)
    why = ("the original ImageNet-21k files' classifier was zeroed by their authors (for fine-tuning only), so "
           "vitkit builds them headless, as timm does. " if str(source or "").endswith("orig_in21k") else "")
    raise ValueError(f"{name} has no classifier (num_classes=0): it gives features, not classes; {why}Fine-tune it "
                     "first (vitkit train … pretrained=TAG), or predict with a tag that has a head "
                     "(orig_in21k_ft_in1k, augreg_in21k_ft_in1k, augreg_in21k)")


@torch.no_grad()
def classify(model: nn.Module, images: Sequence[str | Path], topk: int = 5) -> list[list[tuple[int, str, float]]]:
    """Top-``topk`` (class index, label, probability) for each image file, with the model's own
    preprocessing and labels (``model.pretrained_cfg``); unnamed classes read ``class N``."""
    from ..data.images import open_image  # PIL limited to image decoders (no EPS → Ghostscript)

    require_classifier(model)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    tf = eval_transform(cfg)
    labels = cfg.get("labels")
    batch = []
    for p in images:
        with open_image(p) as im:
            batch.append(tf(im))
    model.eval()
    probs = model(torch.stack(batch)).float().softmax(dim=-1)  # (B, classes)
    k = min(topk, probs.shape[-1])
    top = probs.topk(k, dim=-1)
    out = []
    for p_row, i_row in zip(top.values.tolist(), top.indices.tolist()):
        out.append([(i, labels[i] if labels else f"class {i}", p) for p, i in zip(p_row, i_row)])
    return out

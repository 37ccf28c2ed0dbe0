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


@torch.no_grad()
def classify(model: nn.Module, images: Sequence[str | Path], topk: int = 5) -> list[list[tuple[int, str, float]]]:
    """Top-``topk`` (class index, label, probability) for each image file, with the model's own
    preprocessing and labels (``model.pretrained_cfg``); unnamed classes read ``class N``."""
    from ..data.images import open_image  # PIL limited to image decoders (no EPS → Ghostscript)

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

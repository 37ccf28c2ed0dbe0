"""Segmentation inference: whole image or sliding window, optional flips and extra scales.

The official Swin UperNet config scores the whole image (resized to fit 2048×512). Sliding window
(mmseg's 512×512 windows with stride 341 for ViT-style backbones): windows on a regular grid that
reaches both borders, each window's logits added into the full map and divided by the number of
windows covering each pixel.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _starts(size: int, crop: int, stride: int) -> list[int]:
    """Window starts along one side: every ``stride``, the last one flush with the border."""
    if size <= crop:
        return [0]
    n = -(-(size - crop) // stride) + 1
    return sorted({min(i * stride, size - crop) for i in range(n)})


def slide_logits(model: nn.Module, images: torch.Tensor, crop: Sequence[int], stride: Sequence[int],
                 num_classes: int) -> torch.Tensor:
    """(B, 3, H, W) → (B, K, H, W) logits averaged over overlapping ``crop`` windows."""
    B, _, H, W = images.shape
    ch, cw = crop
    out = images.new_zeros(B, num_classes, H, W)
    count = images.new_zeros(1, 1, H, W)
    for y in _starts(H, ch, stride[0]):
        for x in _starts(W, cw, stride[1]):
            win = images[:, :, y: y + ch, x: x + cw]
            out[:, :, y: y + win.shape[2], x: x + win.shape[3]] += model(win)
            count[:, :, y: y + win.shape[2], x: x + win.shape[3]] += 1
    return out / count


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    num_classes: int,
    mode: str = "whole",
    crop: Sequence[int] = (512, 512),
    stride: Sequence[int] = (341, 341),
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Logits (B, K, *out_size) for normalised images (B, 3, H, W).

    ``mode`` ``"whole"`` runs the model once per image; ``"slide"`` uses :func:`slide_logits`.
    ``scales`` (multi-scale testing) and ``flip`` average the softmax-free logits of the resized /
    mirrored inputs after resizing them to ``out_size`` (default: the input size).
    """
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode={mode!r} is not supported; choose 'whole' or 'slide'")
    H, W = images.shape[-2:]
    out_size = tuple(out_size or (H, W))
    total = None
    for s in scales:
        x = images if s == 1.0 else F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            xi = x.flip(-1) if flipped else x
            logits = model(xi) if mode == "whole" else slide_logits(model, xi, crop, stride, num_classes)
            if flipped:
                logits = logits.flip(-1)
            logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
            total = logits if total is None else total + logits
    return total / (len(scales) * (2 if flip else 1))

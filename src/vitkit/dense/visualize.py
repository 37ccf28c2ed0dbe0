"""Colour-coded overlays: segmentation label maps and detection boxes/masks drawn on the image."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from .seg_data import IGNORE


def colorize(label: np.ndarray | torch.Tensor, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class ids → (H, W, 3) uint8 colours; ignored pixels black."""
    label = np.asarray(label.cpu() if isinstance(label, torch.Tensor) else label)
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)
    lut[IGNORE] = 0
    return lut[label.clip(0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, label: np.ndarray | torch.Tensor, palette: Sequence[Sequence[int]],
            alpha: float = 0.5) -> np.ndarray:
    """Blend the colour map over an (H, W, 3) uint8 image; ignored pixels keep the image."""
    label = np.asarray(label.cpu() if isinstance(label, torch.Tensor) else label)
    colour = colorize(label, palette).astype(np.float32)
    out = image.astype(np.float32)
    keep = (label != IGNORE)[..., None]
    out = np.where(keep, (1 - alpha) * out + alpha * colour, out)
    return out.round().clip(0, 255).astype(np.uint8)


def legend_strip(names: Sequence[str], palette: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """A row of colour swatches with class names, ``width`` pixels wide."""
    from PIL import ImageDraw

    per_row = max(1, width // 110)
    rows = -(-len(names) // per_row)
    strip = Image.new("RGB", (width, 16 * rows + 4), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for k, name in enumerate(names):
        x, y = (k % per_row) * 110 + 2, (k // per_row) * 16 + 2
        draw.rectangle([x, y, x + 12, y + 12], fill=tuple(int(c) for c in palette[k]))
        draw.text((x + 16, y), name[:14], fill=(0, 0, 0))
    return np.asarray(strip)


def save_segmentation_figure(path: str | Path, image: np.ndarray, pred: Any, palette: Sequence[Sequence[int]],
                             label: Any = None, names: Sequence[str] | None = None) -> None:
    """PNG of image | prediction overlay (| ground-truth overlay), with a legend when ``names``."""
    panels = [image, overlay(image, pred, palette)]
    if label is not None:
        panels.append(overlay(image, label, palette))
    sep = np.full((image.shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([p for q in panels for p in (q, sep)][:-1], axis=1)
    if names:
        row = np.concatenate([row, legend_strip(names, palette, row.shape[1])], axis=0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row).save(path)


def draw_detections(image: torch.Tensor, pred: dict[str, Any], class_names: Sequence[str],
                    score_thresh: float = 0.5, palette: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """(3, H, W) uint8 image with the boxes (label and score) and masks scoring ≥ ``score_thresh``."""
    from .seg_data import default_palette

    keep = pred["scores"] >= score_thresh if "scores" in pred else torch.ones(len(pred["boxes"]), dtype=torch.bool)
    labels = pred["labels"][keep].tolist()
    palette = palette or default_palette(max(len(class_names), 1) + 1)
    colours = [tuple(int(c) for c in palette[lb % len(palette)]) for lb in labels]
    out = image
    if "masks" in pred and keep.any():
        masks = pred["masks"][keep]
        masks = (masks[:, 0] > 0.5) if masks.ndim == 4 else masks.bool()
        out = draw_segmentation_masks(out, masks, alpha=0.45, colors=colours)
    text = [f"{class_names[lb - 1] if 0 < lb <= len(class_names) else lb}"
            + (f" {s:.2f}" if "scores" in pred else "") for lb, s in
            zip(labels, pred["scores"][keep].tolist() if "scores" in pred else [0.0] * len(labels))]
    if labels:
        out = draw_bounding_boxes(out, pred["boxes"][keep], labels=text, colors=colours, width=2)
    return out


def save_detection_figure(path: str | Path, image: torch.Tensor, pred: dict[str, Any], class_names: Sequence[str],
                          score_thresh: float = 0.5, target: dict[str, Any] | None = None) -> None:
    """PNG of the predictions (| the ground truth when ``target``), side by side."""
    panels = [draw_detections(image, pred, class_names, score_thresh)]
    if target is not None:
        panels.append(draw_detections(image, target, class_names, 0.0))
    sep = torch.full((3, image.shape[1], 4), 255, dtype=torch.uint8)
    row = torch.cat([p for q in panels for p in (q, sep)][:-1], dim=2)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row.permute(1, 2, 0).numpy()).save(path)

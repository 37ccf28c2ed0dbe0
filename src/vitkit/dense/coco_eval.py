"""COCO box and mask AP with pycocotools' COCOeval, from torchvision-style targets and outputs.

AP is the COCO primary metric: precision averaged over 101 recall points and IoU thresholds
0.50:0.05:0.95, then over categories (Lin et al., "Microsoft COCO", 2014; the Swin paper's
"box AP" / "mask AP"). Ground truth comes from the data set's targets at the original image size;
predictions are the R-CNN's outputs (boxes XYXY, labels 1..K, scores, masks (N, 1, H, W)
probabilities, binarised at 0.5).
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Sequence

import numpy as np
import torch

from ..extras import require  # pycocotools is optional: pip install 'vitkit[dense]'

log = logging.getLogger(__name__)
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _rle(masks: np.ndarray) -> list[dict[str, Any]]:
    mask_utils = require("pycocotools.mask", "COCO mask AP")

    out = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))  # (H, W, N) → N RLEs
    for r in out:
        r["counts"] = r["counts"].decode("ascii")
    return out


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    b = boxes.detach().float().cpu()
    return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).tolist()


class CocoEvaluator:
    """Collects (target, prediction) pairs image by image; :meth:`compute` gathers them from every
    DDP rank and returns ``{"bbox": {"AP": …, "AP50": …}, "segm": {…}}`` with values in 0–1."""

    def __init__(self, num_classes: int, iou_types: Sequence[str] = ("bbox",),
                 class_names: Sequence[str] | None = None) -> None:
        for t in iou_types:
            if t not in ("bbox", "segm"):
                raise ValueError(f"iou type {t!r} is not supported; choose 'bbox' or 'segm'")
        self.iou_types = tuple(iou_types)
        self.categories = [dict(id=k + 1, name=(class_names[k] if class_names else str(k + 1)))
                           for k in range(num_classes)]
        self.images: list[dict[str, Any]] = []
        self.gt: list[dict[str, Any]] = []
        self.dt: list[dict[str, Any]] = []

    def add(self, image_id: int, target: dict[str, Any], pred: dict[str, Any], size: Sequence[int]) -> None:
        """One image: ``size`` (H, W) of the original image, ``target`` and ``pred`` at that size."""
        H, W = int(size[0]), int(size[1])
        self.images.append(dict(id=int(image_id), height=H, width=W))
        segm = "segm" in self.iou_types
        gt_rle = _rle(target["masks"].cpu().numpy()) if segm and len(target["boxes"]) else []
        crowd = target.get("iscrowd", torch.zeros(len(target["boxes"]))).tolist()
        areas = target.get("area")
        for j, (box, label) in enumerate(zip(_xywh(target["boxes"]), target["labels"].tolist())):
            ann = dict(image_id=int(image_id), category_id=int(label), bbox=box, iscrowd=int(crowd[j]),
                       area=float(areas[j]) if areas is not None else box[2] * box[3])
            if segm:
                ann["segmentation"] = gt_rle[j]
            self.gt.append(ann)
        if len(pred["boxes"]) == 0:
            return
        dt_rle = _rle((pred["masks"][:, 0] > 0.5).cpu().numpy()) if segm else []
        for j, (box, label, score) in enumerate(zip(_xywh(pred["boxes"]), pred["labels"].tolist(),
                                                    pred["scores"].tolist())):
            d = dict(image_id=int(image_id), category_id=int(label), bbox=box, score=float(score))
            if segm:
                d["segmentation"] = dt_rle[j]
            self.dt.append(d)

    def _gather(self) -> None:
        from ..train.distributed import gather_objects

        parts = gather_objects((self.images, self.gt, self.dt))  # [ours] in a single process
        if len(parts) > 1:
            self.images = [x for p in parts for x in p[0]]
            self.gt = [x for p in parts for x in p[1]]
            self.dt = [x for p in parts for x in p[2]]

    def compute(self) -> dict[str, dict[str, float]]:
        COCO = require("pycocotools.coco", "COCO box/mask AP").COCO
        from pycocotools.cocoeval import COCOeval

        self._gather()
        if len({im["id"] for im in self.images}) != len(self.images):
            raise ValueError("the same image_id was added twice; give every image a distinct id")
        gt = COCO()
        gt.dataset = dict(images=self.images, categories=self.categories,
                          annotations=[dict(a, id=i + 1) for i, a in enumerate(self.gt)])
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
        results: dict[str, dict[str, float]] = {}
        for iou_type in self.iou_types:
            if not self.dt or not self.gt:
                log.warning("%s AP: %s, so every AP is 0", iou_type,
                            "no detections" if not self.dt else "no ground-truth objects")
                results[iou_type] = {k: 0.0 for k in STAT_NAMES}
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                dt = gt.loadRes([dict(d) for d in self.dt])
                ev = COCOeval(gt, dt, iou_type)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            results[iou_type] = {k: float(v) for k, v in zip(STAT_NAMES, ev.stats)}
        return results

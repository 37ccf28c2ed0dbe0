"""Object detection / instance segmentation: a vitkit backbone inside torchvision's Faster R-CNN
and Mask R-CNN (Ren et al. 2015; He et al. 2017), as the Swin paper's COCO experiments (§4.2).

Swin: the four stage maps → FPN (Lin et al. 2017) with 256 channels → a fifth level by stride-2
subsampling of the coarsest (P6, for the RPN), exactly the 5-level neck of Mask R-CNN. ViT: the
simple pyramid of :class:`~vitkit.dense.backbone.ViTBackbone` is already a set of
``out_channels``-wide maps, so it takes the FPN's place (ViTDet §3, no top-down path), with the
same P6. torchvision supplies the RPN, RoI heads, losses, resizing (short side ``min_size``, a tuple
for multi-scale training, long side ≤ ``max_size``) and normalisation.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from .backbone import DenseBackbone, create_backbone


class FPNBackbone(nn.Module):
    """A dense backbone with a detection neck: ``forward(images)`` → OrderedDict of maps named
    "0".."n-1" and "pool" (P6), all ``out_channels`` wide — what torchvision's R-CNNs expect."""

    def __init__(self, body: DenseBackbone, out_channels: int = 256, fpn: bool | None = None) -> None:
        super().__init__()
        self.body = body
        use_fpn = not body.has_own_pyramid if fpn is None else fpn
        if not use_fpn and set(body.out_channels) != {out_channels}:
            raise ValueError(f"without an FPN the backbone's maps must be {out_channels} wide, got "
                             f"{body.out_channels}; set the ViT pyramid's out_channels to {out_channels}")
        self.fpn = (FeaturePyramidNetwork(body.out_channels, out_channels, extra_blocks=LastLevelMaxPool())
                    if use_fpn else None)
        self.extra = LastLevelMaxPool()
        self.out_channels = out_channels
        self.size_divisor = body.size_divisor

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        d = self.size_divisor
        if x.shape[-2] % d or x.shape[-1] % d:  # the R-CNN transform batches to multiples of 32
            x = F.pad(x, (0, -x.shape[-1] % d, 0, -x.shape[-2] % d))
        feats = OrderedDict((str(i), f) for i, f in enumerate(self.body(x)))
        if self.fpn is not None:
            return self.fpn(feats)
        names, maps = list(feats), list(feats.values())
        maps, names = self.extra(maps, maps, names)  # appends "pool": stride-2 subsampling of the last map
        return OrderedDict(zip(names, maps))


def build_detector(
    model: str,
    num_classes: int,
    *,
    kind: str = "mask_rcnn",
    out_channels: int = 256,
    min_size: int | Sequence[int] = 800,
    max_size: int = 1333,
    box_head_dim: int = 1024,
    mask_head_dim: int = 256,
    weights: Any = None,
    backbone_kwargs: dict[str, Any] | None = None,
    detector_kwargs: dict[str, Any] | None = None,
    **model_overrides: Any,
) -> nn.Module:
    """A torchvision Faster/Mask R-CNN on ``model``'s backbone.

    ``num_classes`` counts object classes (background is added); the model's labels are 1..K.
    ``min_size`` a tuple of short sides samples one per training batch (the paper's multi-scale
    training, 480–800); evaluation uses the last. ``box_head_dim``/``mask_head_dim`` shrink the RoI
    heads for small experiments (defaults: torchvision's). ``detector_kwargs`` go to torchvision
    (``box_detections_per_img``, ``rpn_*``, ``box_*``). ``weights``: a classification checkpoint.
    """
    if kind not in ("mask_rcnn", "faster_rcnn"):
        raise ValueError(f"kind={kind!r} is not supported; choose 'mask_rcnn' or 'faster_rcnn'")
    if num_classes < 1:
        raise ValueError(f"num_classes must be ≥ 1 (object classes, without background), got {num_classes}")
    bk = dict(backbone_kwargs or {})
    body = create_backbone(model, weights=weights, **bk, **model_overrides)
    if body.has_own_pyramid and body.out_channels[0] != out_channels:
        bk["vit_out_channels"] = out_channels  # the simple pyramid feeds the heads directly
        body = create_backbone(model, weights=weights, **bk, **model_overrides)
    backbone = FPNBackbone(body, out_channels)
    cfg = getattr(body, "pretrained_cfg", {})
    mean = list(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = list(cfg.get("std", (0.229, 0.224, 0.225)))
    min_size = tuple(min_size) if isinstance(min_size, Sequence) else (min_size,)
    common = dict(min_size=min_size, max_size=max_size, image_mean=mean, image_std=std,
                  box_head=TwoMLPHead(out_channels * 7 * 7, box_head_dim),
                  box_predictor=FastRCNNPredictor(box_head_dim, num_classes + 1))
    common.update(detector_kwargs or {})
    if kind == "faster_rcnn":
        det = FasterRCNN(backbone, num_classes=None, **common)
    else:
        det = MaskRCNN(backbone, num_classes=None, mask_head=MaskRCNNHeads(out_channels, [mask_head_dim] * 4, 1),
                       mask_predictor=MaskRCNNPredictor(mask_head_dim, mask_head_dim, num_classes + 1), **common)
    det.num_classes = num_classes
    det.pretrained_cfg = cfg
    det.no_weight_decay = lambda: {f"backbone.body.{n}" for n in body.no_weight_decay()}
    return det

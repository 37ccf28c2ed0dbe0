"""Swin and ViT as backbones for dense prediction: semantic segmentation (UperNet) and object
detection / instance segmentation (torchvision's Faster/Mask R-CNN with an FPN).

    from vitkit.dense import create_backbone, build_segmenter, build_detector
    backbone = create_backbone("swin_tiny_patch4_window7_224", weights="swin_tiny.pth")
    feats = backbone(images)            # 4 NCHW maps, strides 4/8/16/32
    seg = build_segmenter("swin_tiny_patch4_window7_224", num_classes=150)
    det = build_detector("swin_tiny_patch4_window7_224", num_classes=80, kind="mask_rcnn")
"""
from .backbone import DenseBackbone, SwinBackbone, ViTBackbone, create_backbone
from .coco_eval import CocoEvaluator
from .detection import FPNBackbone, build_detector
from .inference import predict_logits, slide_logits
from .seg_metrics import SegMetric, confusion_matrix, scores_from_confusion
from .upernet import Segmenter, UperNetHead, build_segmenter

__all__ = [
    "DenseBackbone", "SwinBackbone", "ViTBackbone", "create_backbone", "CocoEvaluator", "FPNBackbone",
    "build_detector", "predict_logits", "slide_logits", "SegMetric", "confusion_matrix",
    "scores_from_confusion", "Segmenter", "UperNetHead", "build_segmenter",
]

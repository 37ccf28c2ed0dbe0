"""Semantic segmentation metrics from a confusion matrix: mIoU, pixel accuracy, mean class accuracy.

IoU_k = TP_k / (TP_k + FP_k + FN_k) over all pixels of the data set (not averaged per image), as
ADE20K's and CamVid's benchmarks count it; mIoU averages over the classes whose union is not
empty (a class never present and never predicted is left out). Pixels labelled ``ignore_index``
count nowhere.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """(K, K) int64 counts, rows = true class, columns = predicted class."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} differ in shape")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"label values must be in 0..{num_classes - 1} or {ignore_index} (ignored); "
                         f"found {int(t.min())}..{int(t.max())}")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(conf: torch.Tensor) -> dict[str, object]:
    """mIoU, aAcc (pixel accuracy), mAcc and per-class IoU/accuracy (NaN where undefined)."""
    conf = conf.double()
    tp = conf.diag()
    gt, pr = conf.sum(1), conf.sum(0)
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = conf.sum()
    return dict(
        mIoU=float(iou.nanmean()) if union.gt(0).any() else float("nan"),
        aAcc=float(tp.sum() / total) if total > 0 else float("nan"),
        mAcc=float(acc.nanmean()) if gt.gt(0).any() else float("nan"),
        iou=iou.tolist(),
        acc=acc.tolist(),
    )


class SegMetric:
    """Accumulates a confusion matrix over batches; :meth:`compute` sums it over DDP ranks first."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.conf = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: class ids (B, H, W) or logits (B, K, H, W); ``target``: (B, H, W)."""
        if pred.ndim == target.ndim + 1:
            pred = pred.argmax(1)
        self.conf += confusion_matrix(pred, target, self.num_classes, self.ignore_index).cpu()

    def compute(self) -> dict[str, object]:
        conf = self.conf
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            backend = dist.get_backend()
            conf = conf.clone().to("cuda" if backend == "nccl" else "cpu")
            dist.all_reduce(conf)
            conf = conf.cpu()
        return scores_from_confusion(conf)

"""Classification metrics: top-k accuracy, a confusion matrix that reduces over ranks, its plot."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """Number of rows whose ``target`` is among the k highest logits, for each k (k capped at K).

    ``target`` is (B,) class indices; soft (B, K) targets (Mixup) count their arg-max class.
    """
    if target.ndim == 2:
        target = target.argmax(dim=1)
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (B, kmax)
    hit = top.eq(target.unsqueeze(1))  # (B, kmax)
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


def accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[float]:
    """Top-k accuracies as fractions in [0, 1]."""
    n = max(int(target.shape[0]), 1)
    return [c / n for c in topk_correct(logits, target, ks)]


class ConfusionMatrix:
    """``counts[t, p]``: images of true class t predicted as p, accumulated batch by batch."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        idx = target.reshape(-1).long() * self.num_classes + preds.reshape(-1).long()
        self.counts += torch.bincount(idx, minlength=self.num_classes ** 2).view(self.num_classes, -1)

    def reduce(self) -> "ConfusionMatrix":
        """Sum the counts over ranks (no-op in one process)."""
        from ..train.distributed import all_reduce_sum

        all_reduce_sum(self.counts)
        return self

    def per_class_accuracy(self) -> torch.Tensor:
        """(K,) recall of each class; NaN for a class with no images."""
        c = self.counts.double()
        return c.diag() / c.sum(dim=1)

    def accuracy(self) -> float:
        c = self.counts
        return float(c.diag().sum()) / max(int(c.sum()), 1)


def plot_confusion_matrix(counts: torch.Tensor, class_names: Sequence[str], path: str | Path,
                          title: str = "", normalize: bool = True) -> None:
    """Save the matrix as a PNG: rows are true classes, columns predictions, each row normalised to
    fractions when ``normalize``; names and cell values are drawn when there are few classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = counts.detach().cpu().double()
    m = c / c.sum(dim=1, keepdim=True).clamp(min=1) if normalize else c
    K = m.shape[0]
    side = min(max(4.0, 0.45 * K + 2.0), 24.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), constrained_layout=True)
    im = ax.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if K <= 40:
        ax.set_xticks(range(K), [str(n) for n in class_names], rotation=90, fontsize=8)
        ax.set_yticks(range(K), [str(n) for n in class_names], fontsize=8)
    if K <= 20:
        for t in range(K):
            for p in range(K):
                v = m[t, p].item()
                if v > 0:
                    label = (f"{v:.2f}" if v >= 0.005 else "<.01") if normalize else f"{int(v)}"
                    ax.text(p, t, label, ha="center", va="center",
                            fontsize=7, color="white" if v > 0.5 * float(m.max()) else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.savefig(path, dpi=100)
    plt.close(fig)

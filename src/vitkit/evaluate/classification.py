"""Evaluate a classifier: loss, top-1/top-5, per-class accuracy, confusion matrix, several resolutions.

    result = evaluate(model, loader, device=torch.device("cpu"), num_classes=10)
    results = evaluate_checkpoint("runs/demo/checkpoint-best.pt", "mnist", img_sizes=[28, 35])
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..build import build_from_checkpoint
from .metrics import ConfusionMatrix, plot_confusion_matrix, topk_correct

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Accuracies are fractions in [0, 1]; ``per_class`` maps class name → accuracy (None: no images)."""

    loss: float
    acc1: float
    acc5: float
    num_images: int
    skipped: int = 0
    img_size: int | None = None
    per_class: dict[str, float | None] = field(default_factory=dict)
    confusion: ConfusionMatrix | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"img_size": self.img_size, "loss": self.loss, "acc1": self.acc1, "acc5": self.acc5,
                "num_images": self.num_images, "skipped": self.skipped, "per_class": self.per_class}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    channels_last: bool = False,
) -> EvalResult:
    """One pass over ``loader`` (batches as produced by :func:`vitkit.data.collate`), sums reduced
    over ranks when distributed, so every rank returns the same numbers for the whole split."""
    from ..train.distributed import all_reduce_sum

    was_training = model.training
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, top-1, top-5, images, skipped
    cm = ConfusionMatrix(num_classes, device)
    for batch in loader:
        sums[4] += len(batch["skipped"])
        x, y = batch["image"], batch["target"]
        if len(y) == 0:
            continue
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        logits = logits.float()
        c1, c5 = topk_correct(logits, y, (1, 5))
        sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
        sums[1] += c1
        sums[2] += c5
        sums[3] += len(y)
        cm.update(logits.argmax(dim=1), y)
    all_reduce_sum(sums)
    cm.reduce()
    model.train(was_training)
    n = max(int(sums[3]), 1)
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    per = cm.per_class_accuracy().tolist()
    return EvalResult(loss=float(sums[0]) / n, acc1=float(sums[1]) / n, acc5=float(sums[2]) / n,
                      num_images=int(sums[3]), skipped=int(sums[4]),
                      per_class={nm: (None if v != v else v) for nm, v in zip(names, per)}, confusion=cm)


def model_from_checkpoint(path: str | Path, ema: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a vitkit training checkpoint was written from and load its weights
    (``ema``: the EMA weights, when the run kept them).

    The network is ``create_model(model_name, **model_kwargs)``: checkpoints record every constructor
    argument (``model_kwargs_complete``), so activation, stem numerics, pooling and the rest are the
    trained model's. Its ``pretrained_cfg`` is the run's preprocessing record (``preprocess``, as
    trained) with the run's class names as labels. Checkpoints from before complete records kept only
    a few overrides; the other options then come from the registry row, with a warning."""
    from ..train.checkpoint import load_checkpoint  # evaluate/ sits below train/ (the loop evaluates)

    ckpt = load_checkpoint(path)
    if "model" not in ckpt or "model_name" not in ckpt:
        raise ValueError(f"{str(path)!r} is not a vitkit training checkpoint (no 'model'/'model_name' entries); "
                         "for weights in other formats use vitkit.load_weights")
    if ckpt.get("task", "classification") not in ("classification", "pretrain"):  # pretrain: its encoder
        raise ValueError(f"{str(path)!r} is a {ckpt['task']} checkpoint; use `vitkit segment|detect eval` "
                         "(vitkit.dense.train_seg / train_det .load_checkpoint)")
    if not ckpt.get("model_kwargs_complete"):
        log.warning("%s predates complete model records: it saved only %s; every other option (activation, "
                    "stem numerics, pooling, LayerScale, …) is taken from the registry row of %r, which may "
                    "differ from the trained model's", path, sorted(ckpt.get("model_kwargs") or {}) or "no options",
                    ckpt["model_name"])
    if ema and "model_ema" not in ckpt:
        raise ValueError(f"{str(path)!r} holds no EMA weights (the run had ema_decay=0)")
    model = build_from_checkpoint(ckpt, ema=ema)  # the one build path: row < the saved record
    model.pretrained_cfg.source = str(path)
    return model, ckpt


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    *,
    split: str = "val",
    img_sizes: Sequence[int] | None = None,
    batch_size: int = 256,
    num_workers: int = 2,
    device: str = "auto",
    data_root: str | None = None,
    val_fraction: float | None = None,
    ema: bool = False,
    out_dir: str | Path | None = None,
    on_result: Callable[[EvalResult], None] | None = None,
    on_error: Callable[[int, Exception], None] | None = None,
) -> list[EvalResult]:
    """Evaluate a checkpoint on ``data`` (default: the training run's) at each of ``img_sizes``
    (default: the trained size).

    With ``out_dir``: ``eval.json`` (the results so far, rewritten as each size completes, so a
    later failure keeps them) and ``confusion-<size>.png`` for each size. ``on_result`` is called
    with each result as it completes; with ``on_error``, a size that fails is passed to it (and
    listed under ``errors`` in eval.json) and the other sizes go on; without, the error is raised.
    ``val_fraction`` defaults to the training run's, so ``split="val"`` is the same held-out set.
    """
    from ..data import resolve_data
    from ..train.distributed import pick_device

    model, ckpt = model_from_checkpoint(checkpoint, ema=ema)
    if ckpt.get("task") == "pretrain":
        raise ValueError(f"{str(checkpoint)!r} is a self-supervised pre-training checkpoint: its encoder has no "
                         "classifier to evaluate. Fine-tune it (vitkit train … weights=CHECKPOINT) or score its "
                         "features (vitkit fewshot --weights CHECKPOINT --data …)")
    dev = pick_device(device)
    model.to(dev)
    cfg = ckpt.get("config", {})
    pcfg = dict(getattr(model, "pretrained_cfg", {}))  # the run's record, as trained (model_from_checkpoint)
    pcfg.update(ckpt.get("preprocess") or {})
    size = ckpt.get("model_kwargs", {}).get("img_size")
    trained = int(pcfg.get("input_size", (3, 224, 224))[-1] or (size if isinstance(size, int) else size[-1]))
    mode = "L" if pcfg.get("input_size", (3,))[0] == 1 else "RGB"
    classes = ckpt.get("classes") or [str(k) for k in range(model.num_classes)]
    vf = cfg.get("val_fraction", 0.0) if val_fraction is None else val_fraction
    if data is None:
        data = cfg.get("data")
        if not data:
            raise ValueError(f"{str(checkpoint)!r} does not record its training data; pass --data PATH")
    src = resolve_data(data, data_root=data_root or cfg.get("data_root") or None)
    results: list[EvalResult] = []
    errors: dict[str, str] = {}

    def write_json() -> None:
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            doc = {"checkpoint": str(checkpoint), "data": str(data), "split": split,
                   "results": [r.to_dict() for r in results]}
            if errors:
                doc["errors"] = errors
            (Path(out_dir) / "eval.json").write_text(json.dumps(doc, indent=2))

    for size in img_sizes or [trained]:
        try:
            res = _evaluate_size(model, ckpt, src, size, split, pcfg, mode, classes, vf, dev, batch_size,
                                 num_workers, out_dir)
        except (ValueError, RuntimeError, OSError) as e:
            if on_error is None:
                raise
            errors[str(size)] = str(e)
            on_error(size, e)
            write_json()
            continue
        log.debug("%s @%dpx: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%d images%s)", Path(checkpoint).name, size,
                  100 * res.acc1, 100 * res.acc5, res.loss, res.num_images,
                  f", {res.skipped} unreadable skipped" if res.skipped else "")
        results.append(res)
        write_json()
        if on_result is not None:
            on_result(res)
    return results


def _evaluate_size(model, ckpt, src, size, split, pcfg, mode, classes, vf, dev, batch_size, num_workers,
                   out_dir) -> EvalResult:
    """One size of :func:`evaluate_checkpoint`: the data at ``size``, scored, its confusion PNG."""
    from ..data import build_dataset, collate, eval_transform
    from ..data.images import check_readable

    tf = eval_transform(size, mean=pcfg["mean"], std=pcfg["std"], interpolation=pcfg.get("interpolation", "bicubic"),
                        crop_pct=pcfg.get("crop_pct", 1.0))
    ds = build_dataset(src, split, tf, mode=mode, val_fraction=vf if split != "test" else 0.0)
    check_readable(ds, split)  # a split of Git LFS pointers or empty files: stop, naming the cause
    if list(ds.classes) != list(classes):
        raise ValueError(f"the data's classes {ds.classes[:5]}… differ from the checkpoint's {classes[:5]}…; "
                         "evaluate on data with the same class folders")
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    res = evaluate(model, loader, device=dev, num_classes=model.num_classes, class_names=classes)
    res.img_size = size
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        plot_confusion_matrix(res.confusion.counts, classes, Path(out_dir) / f"confusion-{size}.png",
                              title=f"{ckpt['model_name']} @{size}px: top-1 {100 * res.acc1:.2f}%")
    return res

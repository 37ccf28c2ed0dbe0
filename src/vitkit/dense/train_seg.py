"""Semantic segmentation: a :class:`~vitkit.train.Trainer` task (iteration based, as UperNet's
recipe: ``iters`` optimiser steps, an evaluation with checkpoints every ``eval_interval``),
evaluation (mIoU / pixel accuracy, whole or sliding window), and prediction overlays. The same
command runs under ``torchrun`` (DDP or FSDP; each process takes ``batch_size / world`` crops; the
confusion matrix is summed over processes). The run folder, resume, interrupt handling, NaN stop
and checkpoint format are the Trainer's, as for classification."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..train.config import TrainConfig
from .inference import predict_logits
from .recipes import SegRecipe
from .runtime import DistInfo, ShardSampler, autocast, load_checkpoint as _load, recipe_from_dict, teardown, unwrap, warmup_poly
from .seg_data import IGNORE, EvalTransform, SegSpec, collate_pad, open_segmentation, train_transform
from .seg_metrics import SegMetric
from .upernet import Segmenter, build_segmenter
from ..data.images import open_image  # PIL limited to image decoders (no EPS → Ghostscript)

log = logging.getLogger("vitkit.dense")


def build_model(r: SegRecipe, num_classes: int, with_weights: bool = True) -> Segmenter:
    return build_segmenter(r.model, num_classes, channels=r.head_channels, aux_channels=r.aux_channels,
                           aux=r.aux_weight > 0, norm=r.norm, weights=(r.weights or None) if with_weights else None,
                           backbone_kwargs=r.backbone_kwargs, **r.model_kwargs)


def seg_loss(out: torch.Tensor, aux: torch.Tensor | None, y: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """Pixel cross-entropy over labelled pixels (+ ``aux_weight`` × the auxiliary head's); a crop
    with no labelled pixel contributes zero instead of NaN."""
    n = (y != IGNORE).sum().clamp(min=1)
    loss = F.cross_entropy(out.float(), y, ignore_index=IGNORE, reduction="sum") / n
    if aux is not None and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(aux.float(), y, ignore_index=IGNORE, reduction="sum") / n
    return loss


@torch.no_grad()
def score(model: nn.Module, loader: Any, num_classes: int, *, device: torch.device, mode: str = "whole",
          crop: Sequence[int] = (512, 512), stride: Sequence[int] = (341, 341), scales: Sequence[float] = (1.0,),
          flip: bool = False, autocast_fn: Callable[[], Any] = contextlib.nullcontext) -> dict[str, Any]:
    """mIoU, aAcc, mAcc and per-class IoU over the ``(image, label)`` batches of ``loader`` (this
    process's shard; the confusion matrix is summed over processes)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    metric = SegMetric(num_classes, IGNORE)
    for x, y in loader:
        with autocast_fn():
            logits = predict_logits(model, x.to(device), num_classes=num_classes, mode=mode, crop=crop,
                                    stride=stride, scales=scales, flip=flip, out_size=y.shape[-2:])
        metric.update(logits.argmax(1).cpu(), y)
    model.train(was_training)
    return metric.compute()


def evaluate(model: nn.Module, dataset: Dataset, num_classes: int, *, device: torch.device, d: DistInfo | None = None,
             mode: str = "whole", crop: Sequence[int] = (512, 512), stride: Sequence[int] = (341, 341),
             scales: Sequence[float] = (1.0,), flip: bool = False, batch_size: int = 1, workers: int = 0,
             amp: bool = False) -> dict[str, Any]:
    """mIoU, aAcc, mAcc and per-class IoU over ``dataset`` (labels at full resolution; use
    ``batch_size`` 1 unless all images share a size). Under DDP each process scores a shard."""
    d = d or DistInfo(device=device)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), d.rank, d.world_size),
                        num_workers=workers, collate_fn=collate_pad)
    return score(model, loader, num_classes, device=device, mode=mode, crop=crop, stride=stride, scales=scales,
                 flip=flip, autocast_fn=lambda: autocast(device, amp))


def train_config(r: SegRecipe) -> TrainConfig:
    """The Trainer settings of recipe ``r``: ``iters`` steps of the global batch, AdamW (β 0.9/0.999)
    at ``lr`` with ``weight_decay`` (none on norms, biases, positions, bias tables), bf16 autocast on
    CUDA when ``amp``. The warm-up + poly schedule and the evaluation interval come from the task."""
    return TrainConfig(model=r.model, data=r.data, epochs=1, max_steps=r.iters, batch_size=r.batch_size, accum_steps=1,
                       optimizer="adamw", lr=r.lr, betas=(0.9, 0.999), weight_decay=r.weight_decay,
                       clip_grad=r.clip_grad, seed=r.seed, device="auto", precision="auto" if r.amp else "fp32",
                       parallel=r.parallel, num_workers=r.workers, progress=False, threads=r.threads)


class SegmentationTask:
    """UperNet training as a :class:`~vitkit.train.Trainer` task: opens the data (its classes give
    the head), builds the segmenter (or takes the caller's), sets the transforms from the backbone's
    preprocessing record, pixel cross-entropy (+ the auxiliary head), mIoU every ``eval_interval``
    steps, UperNet's linear warm-up + poly schedule over the iterations."""

    name = "segmentation"
    main_metric = "val_mIoU"
    sync_bn = True  # SyncBN in the heads under DDP on GPUs
    curve_keys = ("val_mIoU", "val_aAcc", "val_mAcc")
    collate = staticmethod(collate_pad)

    def __init__(self, r: SegRecipe) -> None:
        self.r = r
        self.eval_interval = r.eval_interval
        self.data_name = r.data
        self.last_scores: dict[str, Any] = {}
        self.spec: SegSpec | None = None

    # ---- setup
    def build(self, dist: DistInfo, *, model: nn.Module | None = None, train_set: Dataset | None = None,
              val_set: Dataset | None = None) -> tuple[Dataset, Dataset, nn.Module]:
        r = self.r
        if not r.data and (train_set is None or val_set is None):
            raise ValueError("no data: pass data=PATH (a folder or .tar: ADE20K, CamVid or images/labels)")
        train_ds = train_set if train_set is not None else open_segmentation(r.data, "train", fmt=r.data_format,
                                                                             num_classes=r.num_classes)
        self.spec = spec = train_ds.spec
        self.num_classes, self.class_names = spec.num_classes, list(spec.class_names)
        if model is None:
            model = build_model(r, spec.num_classes)
        cfg = model.pretrained_cfg
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        if train_set is None:
            train_ds.transform = train_transform(r.crop_size, r.base_size, r.scale_range, r.hflip, r.photometric,
                                                 mean, std)
        val_ds = val_set if val_set is not None else open_segmentation(
            r.data, "val", fmt=r.data_format, num_classes=r.num_classes,
            transform=EvalTransform(r.base_size if r.test_resize else None, mean, std))
        if r.grad_checkpointing:
            model.backbone.set_grad_checkpointing(True)
        return train_ds, val_ds, model

    def val_loader(self, val_set: Dataset, shard: Sequence[int]) -> DataLoader:
        return DataLoader(val_set, batch_size=self.r.eval_batch_size, sampler=list(shard),
                          num_workers=min(self.r.workers, 1), collate_fn=collate_pad)

    def lr_lambda(self, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
        r = self.r
        return warmup_poly(total_steps, r.warmup_iters, r.warmup_ratio, r.poly_power)

    def describe(self, trainer: Any) -> str:
        from ..train.progress import model_with_overrides, plural

        n_params = sum(p.numel() for p in unwrap(trainer.model).parameters())
        return (f"segmentation: {model_with_overrides(self.r.model, self.r.model_kwargs)} + UperNet, "
                f"{n_params / 1e6:.2f} M parameters (whole segmenter), {self.num_classes} "
                f"classes, {len(trainer.train_set)} train / {len(trainer.val_set)} val images, "
                f"{plural(trainer.dist.world_size, 'process')} on {trainer.device}")

    # ---- the Task protocol
    def to_device(self, batch: Any, device: torch.device, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def training_loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        x, y = batch
        out, aux = model(x, return_aux=True)
        return seg_loss(out, aux, y, self.r.aux_weight), len(x)

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device,
                 autocast: Callable[[], Any] = contextlib.nullcontext, channels_last: bool = False) -> dict[str, Any]:
        r = self.r
        s = score(model, loader, self.num_classes, device=device, mode=r.eval_mode, crop=r.eval_crop,
                  stride=r.eval_stride, autocast_fn=autocast)
        self.last_scores = s
        if not (torch.distributed.is_initialized() and torch.distributed.get_rank()):
            log.info("eval: mIoU %.4f  aAcc %.4f  mAcc %.4f", s["mIoU"], s["aAcc"], s["mAcc"])
        return {"val_mIoU": s["mIoU"], "val_aAcc": s["aAcc"], "val_mAcc": s["mAcc"], "val_iou": s["iou"]}

    # ---- what the run folder keeps
    def checkpoint_meta(self) -> dict[str, Any]:
        spec = self.spec
        return dict(task=self.name, config=dataclasses.asdict(self.r), num_classes=spec.num_classes,
                    class_names=list(spec.class_names), palette=[list(c) for c in spec.palette],
                    void_values=list(spec.void_values), reduce_zero_label=spec.reduce_zero_label)

    def config_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self.r)


def train(r: SegRecipe, resume: bool = False) -> dict[str, Any]:
    """Train per ``r`` with :class:`~vitkit.train.Trainer` and :class:`SegmentationTask`; returns the
    last evaluation's scores. Writes the run folder ``r.out``; ``resume`` continues from its
    checkpoint-last.pt (a fresh run when there is none)."""
    from ..train.loop import Trainer
    from ..train.progress import StepLog

    task = SegmentationTask(r)  # its build() names a missing data=PATH
    try:
        Trainer(train_config(r), r.out, resume=resume and (Path(r.out) / "checkpoint-last.pt").is_file(), task=task,
                callbacks=[StepLog(r.log_interval)]).fit()
    finally:
        teardown()
    return task.last_scores


# ------------------------------------------------------------------------------ from a checkpoint
def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[Segmenter, SegRecipe, dict[str, Any]]:
    """Rebuild the segmenter a training run saved; returns (model in eval mode, recipe, metadata)."""
    state = _load(path)
    if state.get("task") != "segmentation":
        raise ValueError(f"{path} is not a segmentation checkpoint (task={state.get('task')!r})")
    r = recipe_from_dict(SegRecipe, state)
    model = build_model(r, state["num_classes"], with_weights=False)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), r, state


def predict(checkpoint: str | Path, images: Sequence[str | Path], out_dir: str | Path, *, mode: str = "whole",
            crop: Sequence[int] | None = None, stride: Sequence[int] | None = None,
            labels: Sequence[str | Path | None] | None = None) -> list[Path]:
    """Write ``<stem>.png`` (class ids) and ``<stem>_overlay.png`` (image | colour-coded prediction
    [| ground truth]) for each image into ``out_dir``."""
    from PIL import Image

    from .visualize import save_segmentation_figure

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, r, meta = load_checkpoint(checkpoint, device)
    cfg = model.pretrained_cfg
    tf = EvalTransform(r.base_size if r.test_resize else None, cfg.get("mean", (0.485, 0.456, 0.406)),
                       cfg.get("std", (0.229, 0.224, 0.225)))
    spec = SegSpec(meta["num_classes"], tuple(meta["class_names"]), tuple(tuple(c) for c in meta["palette"]),
                   tuple(meta.get("void_values", ())), meta.get("reduce_zero_label", False))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, path in enumerate(images):
        with open_image(path) as im:
            rgb = np.asarray(im.convert("RGB")).copy()
        x, _ = tf(torch.from_numpy(rgb).permute(2, 0, 1), None)
        logits = predict_logits(model, x[None].to(device), num_classes=spec.num_classes, mode=mode,
                                crop=crop or r.eval_crop, stride=stride or r.eval_stride, out_size=rgb.shape[:2])
        pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        gt = None
        if labels and labels[i]:
            with open_image(labels[i]) as im:
                gt = spec.lut[np.asarray(im)]
        stem = Path(path).stem
        Image.fromarray(pred).save(out_dir / f"{stem}.png")
        save_segmentation_figure(out_dir / f"{stem}_overlay.png", rgb, pred, spec.palette, gt, spec.class_names)
        written.append(out_dir / f"{stem}_overlay.png")
    return written

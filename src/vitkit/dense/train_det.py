"""Object detection / instance segmentation: a :class:`~vitkit.train.Trainer` task (epoch based,
the 1×/3× schedules), COCO box/mask AP evaluation, and prediction overlays. Runs under ``torchrun``
like classification (DDP or FSDP; predictions from every process are gathered before COCOeval). The
run folder, resume, interrupt handling, NaN stop and checkpoint format are the Trainer's."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..train.config import TrainConfig
from .coco_eval import CocoEvaluator
from .det_data import collate_detection, detection_transform, open_detection
from .detection import build_detector
from .recipes import DetRecipe
from .runtime import DistInfo, ShardSampler, autocast, load_checkpoint as _load, recipe_from_dict, teardown, unwrap, warmup_steps

log = logging.getLogger("vitkit.dense")


def build_model(r: DetRecipe, num_classes: int, with_weights: bool = True) -> nn.Module:
    return build_detector(
        r.model, num_classes, kind=r.kind, out_channels=r.fpn_channels, min_size=r.min_size, max_size=r.max_size,
        box_head_dim=r.box_head_dim, mask_head_dim=r.mask_head_dim,
        weights=(r.weights or None) if with_weights else None, backbone_kwargs=r.backbone_kwargs,
        detector_kwargs=dict(box_score_thresh=r.score_thresh, box_detections_per_img=r.detections_per_img),
        **r.model_kwargs)


@torch.no_grad()
def score(model: nn.Module, loader: Any, num_classes: int, *, device: torch.device, masks: bool = True,
          class_names: Sequence[str] | None = None,
          autocast_fn: Callable[[], Any] = contextlib.nullcontext) -> dict[str, dict[str, float]]:
    """COCO AP over the ``(images, targets)`` batches of ``loader`` (this process's shard; the
    predictions of every process are gathered before COCOeval)."""
    model = unwrap(model)
    was_training = model.training
    model.eval()
    ev = CocoEvaluator(num_classes, ("bbox", "segm") if masks else ("bbox",), class_names)
    for images, targets in loader:
        with autocast_fn():
            preds = model([im.to(device) for im in images])
        for im, t, p in zip(images, targets, preds):
            ev.add(t["image_id"], t, {k: v.float().cpu() for k, v in p.items()}, im.shape[-2:])
    model.train(was_training)
    return ev.compute()


def evaluate(model: nn.Module, dataset: Dataset, num_classes: int, *, device: torch.device, d: DistInfo | None = None,
             masks: bool = True, class_names: Sequence[str] | None = None, workers: int = 0,
             amp: bool = False) -> dict[str, dict[str, float]]:
    """COCO AP of ``model`` on ``dataset`` (targets at the original image size): ``{"bbox": {...},
    "segm": {...}}`` (segm when ``masks``)."""
    d = d or DistInfo(device=device)
    loader = DataLoader(dataset, batch_size=1, sampler=ShardSampler(len(dataset), d.rank, d.world_size),
                        num_workers=workers, collate_fn=collate_detection)
    return score(model, loader, num_classes, device=device, masks=masks, class_names=class_names,
                 autocast_fn=lambda: autocast(device, amp))


def _flat(prefix: str, res: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{prefix}_{t}_{k}": v for t, stats in res.items() for k, v in stats.items() if k in ("AP", "AP50", "AP75")}


def train_config(r: DetRecipe) -> TrainConfig:
    """The Trainer settings of recipe ``r``: ``epochs`` epochs of the global batch, AdamW (β 0.9/0.999)
    at ``lr`` with ``weight_decay``, evaluation every ``eval_interval`` epochs, bf16 autocast on CUDA
    when ``amp``. The warm-up + step schedule comes from the task."""
    return TrainConfig(model=r.model, data=r.data, epochs=r.epochs, batch_size=r.batch_size, accum_steps=1,
                       optimizer="adamw", lr=r.lr, betas=(0.9, 0.999), weight_decay=r.weight_decay,
                       clip_grad=r.clip_grad, seed=r.seed, device="auto", precision="auto" if r.amp else "fp32",
                       parallel=r.parallel, num_workers=r.workers, progress=False, threads=r.threads,
                       eval_every=r.eval_interval)


class DetectionTask:
    """Mask (or Faster) R-CNN + FPN training as a :class:`~vitkit.train.Trainer` task: the sum of
    the R-CNN losses, COCO AP at evaluation epochs (also on the training split with
    ``eval_on_train``), linear warm-up then ×``lr_gamma`` at the ``lr_steps`` epochs."""

    name = "detection"
    main_metric = "val_bbox_AP"
    curve_keys = ("val_bbox_AP", "val_bbox_AP50", "val_segm_AP", "train_bbox_AP")
    collate = staticmethod(collate_detection)

    def __init__(self, r: DetRecipe) -> None:
        if r.kind not in ("mask_rcnn", "faster_rcnn"):
            raise ValueError(f"kind={r.kind!r} is not supported; choose mask_rcnn or faster_rcnn")
        self.r = r
        self.data_name = r.data
        self.masks = r.kind == "mask_rcnn"
        self.last_row: dict[str, Any] = {}
        self.parts: dict[str, list[float]] = {}  # the loss terms since the last evaluation (this process)

    def build(self, dist: DistInfo, *, model: nn.Module | None = None, train_set: Dataset | None = None,
              val_set: Dataset | None = None) -> tuple[Dataset, Dataset, nn.Module]:
        r = self.r
        if not r.data and (train_set is None or val_set is None):
            raise ValueError("no data: pass data=PATH (a COCO folder with annotations/, or a YOLO images/labels folder)")
        if train_set is None:
            train_set = open_detection(r.data, "train", fmt=r.data_format, masks=None if self.masks else False,
                                       transforms=detection_transform(True, r.hflip, r.crop_policy, r.crop_resize,
                                                                      r.crop_size, r.max_size))
        if self.masks and not train_set.masks:
            raise ValueError(f"kind=mask_rcnn needs instance masks (polygons or RLE) but {r.data} has boxes only; "
                             "use kind=faster_rcnn")
        if val_set is None:
            val_set = open_detection(r.data, "val", fmt=r.data_format, masks=self.masks,
                                     transforms=detection_transform(False))
        self.num_classes, self.class_names = train_set.num_classes, list(train_set.class_names)
        if model is None:
            model = build_model(r, train_set.num_classes)
        if r.grad_checkpointing:
            model.backbone.body.set_grad_checkpointing(True)
        return train_set, val_set, model

    def val_loader(self, val_set: Dataset, shard: Sequence[int]) -> DataLoader:
        return DataLoader(val_set, batch_size=1, sampler=list(shard), num_workers=0, collate_fn=collate_detection)

    def lr_lambda(self, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
        r = self.r
        return warmup_steps([e * steps_per_epoch for e in r.lr_steps], r.lr_gamma, r.warmup_iters, r.warmup_ratio)

    def describe(self, trainer: Any) -> str:
        from ..train.progress import model_with_overrides, plural

        model = unwrap(trainer.model)
        n_params = sum(p.numel() for p in model.parameters())
        n_body = sum(p.numel() for p in model.backbone.body.parameters()) if hasattr(model.backbone, "body") else 0
        body = f"; backbone {n_body / 1e6:.2f} M" if n_body else ""
        return (f"detection: {model_with_overrides(self.r.model, self.r.model_kwargs)} + FPN + {self.r.kind}, "
                f"{n_params / 1e6:.2f} M parameters (whole detector{body}), {self.num_classes} classes, "
                f"{len(trainer.train_set)} train / {len(trainer.val_set)} val images, "
                f"{plural(trainer.dist.world_size, 'process')} on {trainer.device}")

    # ---- the Task protocol
    def to_device(self, batch: Any, device: torch.device, channels_last: bool = False) -> Any:
        images, targets = batch
        return ([im.to(device, non_blocking=True) for im in images],
                [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()} for t in targets])

    def training_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        images, targets = batch
        loss_dict = model(images, targets)
        for k, v in loss_dict.items():
            self.parts.setdefault(k, []).append(float(v.detach()))
        return sum(v.float() for v in loss_dict.values()), len(images)

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device,
                 autocast: Callable[[], Any] = contextlib.nullcontext, channels_last: bool = False) -> dict[str, Any]:
        r = self.r
        res = score(model, loader, self.num_classes, device=device, masks=self.masks, class_names=self.class_names,
                    autocast_fn=autocast)
        row: dict[str, Any] = {f"train_{k}": sum(v) / len(v) for k, v in self.parts.items() if v}
        self.parts = {}
        row.update(_flat("val", res))
        if r.eval_on_train:
            train = open_detection(r.data, "train", fmt=r.data_format, masks=self.masks,
                                   transforms=detection_transform(False))
            rank, world = ((torch.distributed.get_rank(), torch.distributed.get_world_size())
                           if torch.distributed.is_initialized() else (0, 1))
            row.update(_flat("train", score(model, self.val_loader(train, range(rank, len(train), world)),
                                            self.num_classes, device=device, masks=self.masks,
                                            class_names=self.class_names, autocast_fn=autocast)))
        self.last_row = row
        if not (torch.distributed.is_initialized() and torch.distributed.get_rank()):
            log.info("eval: %s", "  ".join(f"{k} {v:.4f}" for k, v in row.items() if "_AP" in k))
        return row

    # ---- what the run folder keeps
    def checkpoint_meta(self) -> dict[str, Any]:
        return dict(task=self.name, config=dataclasses.asdict(self.r), num_classes=self.num_classes,
                    class_names=list(self.class_names), masks=self.masks)

    def config_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self.r)


def train(r: DetRecipe, resume: bool = False) -> dict[str, Any]:
    """Train per ``r`` with :class:`~vitkit.train.Trainer` and :class:`DetectionTask`; returns the last
    evaluation's row (AP, loss terms). Writes the run folder ``r.out``; ``resume`` continues from its
    checkpoint-last.pt (a fresh run when there is none)."""
    from ..extras import check
    from ..train.loop import Trainer
    from ..train.progress import StepLog

    check("pycocotools", "detection training (COCO box/mask AP at each evaluation)")  # now, not after training
    task = DetectionTask(r)  # its build() names a missing data=PATH
    try:
        result = Trainer(train_config(r), r.out, resume=resume and (Path(r.out) / "checkpoint-last.pt").is_file(),
                         task=task, callbacks=[StepLog(r.log_interval)]).fit()
    finally:
        teardown()
    return {**result.metrics[-1], **task.last_row} if result.metrics else task.last_row


# ------------------------------------------------------------------------------ from a checkpoint
def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, DetRecipe, dict[str, Any]]:
    """Rebuild the detector a training run saved; returns (model in eval mode, recipe, metadata)."""
    state = _load(path)
    if state.get("task") != "detection":
        raise ValueError(f"{path} is not a detection checkpoint (task={state.get('task')!r})")
    r = recipe_from_dict(DetRecipe, state)
    model = build_model(r, state["num_classes"], with_weights=False)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), r, state


def predict(checkpoint: str | Path, images: Sequence[str | Path], out_dir: str | Path, *,
            score_thresh: float = 0.5, targets: Sequence[dict[str, Any] | None] | None = None) -> list[Path]:
    """Write ``<stem>_det.png`` overlays (predicted boxes/masks ≥ ``score_thresh`` [| ground truth])."""
    from .det_data import _read_rgb
    from .visualize import save_detection_figure

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _, meta = load_checkpoint(checkpoint, device)
    out_dir = Path(out_dir)
    written = []
    for i, path in enumerate(images):
        img = _read_rgb(Path(path))
        with torch.no_grad():
            pred = model([img.float().div(255).to(device)])[0]
        pred = {k: v.cpu() for k, v in pred.items()}
        dest = out_dir / f"{Path(path).stem}_det.png"
        save_detection_figure(dest, img, pred, meta["class_names"], score_thresh,
                              targets[i] if targets else None)
        written.append(dest)
    return written


def predict_split(checkpoint: str | Path, data: str | Path, split: str, out_dir: str | Path, *,
                  score_thresh: float = 0.5, fmt: str = "auto") -> list[Path]:
    """Overlays for every image of a data split: predictions | ground truth, side by side."""
    from .visualize import save_detection_figure

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, r, meta = load_checkpoint(checkpoint, device)
    ds = open_detection(data, split, fmt=fmt if fmt != "auto" else r.data_format, masks=meta["masks"])
    out_dir = Path(out_dir)
    written = []
    for i in range(len(ds)):
        img, target = ds.load(i)
        img = img.as_subclass(torch.Tensor)
        with torch.no_grad():
            pred = {k: v.cpu() for k, v in model([img.float().div(255).to(device)])[0].items()}
        gt = {k: v.as_subclass(torch.Tensor) for k, v in target.items() if k in ("boxes", "labels", "masks")}
        dest = out_dir / f"{split}_{i:04d}_det.png"
        save_detection_figure(dest, img, pred, meta["class_names"], score_thresh, gt)
        written.append(dest)
    return written

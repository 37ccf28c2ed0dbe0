"""Object detection / instance segmentation: the training loop (epoch based, the 1×/3× schedules),
COCO box/mask AP evaluation, and prediction overlays. Runs under ``torchrun`` like classification
(DDP; predictions from every process are gathered before COCOeval)."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .coco_eval import CocoEvaluator
from .det_data import collate_detection, detection_transform, open_detection
from .detection import build_detector
from .recipes import DetRecipe
from .runtime import (DistInfo, Parallel, RunFolder, ShardSampler, autocast, check_finite, load_checkpoint as _load, param_groups,
                      per_rank_batch, restore_rng, rng_states, setup, teardown, train_sampler, unwrap, warmup_steps)

log = logging.getLogger("vitkit.dense")


def build_model(r: DetRecipe, num_classes: int, with_weights: bool = True) -> nn.Module:
    return build_detector(
        r.model, num_classes, kind=r.kind, out_channels=r.fpn_channels, min_size=r.min_size, max_size=r.max_size,
        box_head_dim=r.box_head_dim, mask_head_dim=r.mask_head_dim,
        weights=(r.weights or None) if with_weights else None, backbone_kwargs=r.backbone_kwargs,
        detector_kwargs=dict(box_score_thresh=r.score_thresh, box_detections_per_img=r.detections_per_img),
        **r.model_kwargs)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, num_classes: int, *, device: torch.device, d: DistInfo | None = None,
             masks: bool = True, class_names: Sequence[str] | None = None, workers: int = 0,
             amp: bool = False) -> dict[str, dict[str, float]]:
    """COCO AP of ``model`` on ``dataset`` (targets at the original image size): ``{"bbox": {...},
    "segm": {...}}`` (segm when ``masks``)."""
    d = d or DistInfo(device=device)
    model = unwrap(model)
    was_training = model.training
    model.eval()
    ev = CocoEvaluator(num_classes, ("bbox", "segm") if masks else ("bbox",), class_names)
    loader = DataLoader(dataset, batch_size=1, sampler=ShardSampler(len(dataset), d.rank, d.world_size),
                        num_workers=workers, collate_fn=collate_detection)
    for images, targets in loader:
        with autocast(device, amp):
            preds = model([im.to(device) for im in images])
        for im, t, p in zip(images, targets, preds):
            ev.add(t["image_id"], t, {k: v.float().cpu() for k, v in p.items()}, im.shape[-2:])
    model.train(was_training)
    return ev.compute()


def _flat(prefix: str, res: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{prefix}_{t}_{k}": v for t, stats in res.items() for k, v in stats.items() if k in ("AP", "AP50", "AP75")}


def train(r: DetRecipe, resume: bool = False) -> dict[str, Any]:
    """Train per ``r``; returns the last evaluation's AP. Writes the run folder ``r.out``."""
    d = setup(r.seed, r.threads)
    try:
        return _train(r, resume, d)
    finally:
        teardown()


def _train(r: DetRecipe, resume: bool, d: DistInfo) -> dict[str, Any]:
    if not r.data:
        raise ValueError("no data: pass data=PATH (a COCO folder with annotations/, or a YOLO images/labels folder)")
    if r.kind not in ("mask_rcnn", "faster_rcnn"):
        raise ValueError(f"kind={r.kind!r} is not supported; choose mask_rcnn or faster_rcnn")
    want_masks = None if r.kind == "mask_rcnn" else False
    train_ds = open_detection(r.data, "train", fmt=r.data_format, masks=want_masks,
                              transforms=detection_transform(True, r.hflip, r.crop_policy, r.crop_resize,
                                                                 r.crop_size, r.max_size))
    if r.kind == "mask_rcnn" and not train_ds.masks:
        raise ValueError(f"kind=mask_rcnn needs instance masks (polygons or RLE) but {r.data} has boxes only; "
                         "use kind=faster_rcnn")
    masks = r.kind == "mask_rcnn"
    val_ds = open_detection(r.data, "val", fmt=r.data_format, masks=masks, transforms=detection_transform(False))
    model = build_model(r, train_ds.num_classes).to(d.device)
    if r.grad_checkpointing:
        model.backbone.body.set_grad_checkpointing(True)
    par = Parallel(r.parallel, d)
    model = par.shard(model)
    sampler = train_sampler(len(train_ds), d, r.seed, drop_last=False)
    # its own generator: starting an epoch draws nothing from the global RNG (proposal sampling's stream)
    loader = DataLoader(train_ds, batch_size=per_rank_batch(r.batch_size, d.world_size), sampler=sampler,
                        num_workers=r.workers, collate_fn=collate_detection, persistent_workers=r.workers > 0,
                        generator=torch.Generator())
    ipe = len(loader)
    opt = torch.optim.AdamW(param_groups(model, r.weight_decay), lr=r.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_steps([e * ipe for e in r.lr_steps], r.lr_gamma, r.warmup_iters, r.warmup_ratio))
    run = RunFolder(r.out, d.is_main)
    start_epoch, best, it, rng = 0, -1.0, 0, None
    last = run.dir / "checkpoint-last.pt"
    if resume and last.exists():
        state = _load(last)
        par.load(model, opt, state, last)
        sched.load_state_dict(state["scheduler"])
        start_epoch, best, it, rng = state["epoch"], state["best"], state["iter"], state.get("rng")
        log.info("resumed from %s after epoch %d", last, start_epoch)
    model = par.wrap(model)
    run.write_config(r)
    if d.is_main:
        n_params = sum(p.numel() for p in unwrap(model).parameters())
        log.info("detection: %s + FPN + %s, %.2f M parameters, %d classes, %d train / %d val images, "
                 "%d processes on %s", r.model, r.kind, n_params / 1e6, train_ds.num_classes, len(train_ds),
                 len(val_ds), d.world_size, d.device)
    model.train()
    curve: list[tuple[int, float]] = []
    result: dict[str, Any] = {}
    t0 = time.time()
    if rng is not None:
        restore_rng(rng, d.rank, d.world_size)
    for epoch in range(start_epoch, r.epochs):
        sampler.set_epoch(epoch)
        parts: dict[str, list[float]] = {}
        for images, targets in loader:
            images = [im.to(d.device, non_blocking=True) for im in images]
            targets = [{k: (v.to(d.device) if isinstance(v, torch.Tensor) else v) for k, v in t.items()} for t in targets]
            with autocast(d.device, r.amp):
                loss_dict = model(images, targets)
            loss = sum(v.float() for v in loss_dict.values())
            check_finite(loss, it)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if r.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), r.clip_grad)
            opt.step()
            sched.step()
            it += 1
            parts.setdefault("loss", []).append(loss.item())
            for k, v in loss_dict.items():
                parts.setdefault(k, []).append(v.item())
            if d.is_main and it % r.log_interval == 0:
                curve.append((it, float(np.mean(parts["loss"][-r.log_interval:]))))
                log.info("epoch %d iter %d  loss %.4f  lr %.2e  %.1f s", epoch + 1, it, curve[-1][1],
                         opt.param_groups[0]["lr"], time.time() - t0)
        done = epoch + 1
        if done % r.eval_interval == 0 or done == r.epochs:
            res = evaluate(par.whole(model), val_ds, train_ds.num_classes, device=d.device, d=d, masks=masks,
                           class_names=train_ds.class_names, amp=r.amp)
            row: dict[str, Any] = dict(epoch=done, iter=it, train_loss=float(np.mean(parts["loss"])),
                                       **{f"train_{k}": float(np.mean(v)) for k, v in parts.items() if k != "loss"},
                                       **_flat("val", res), lr=opt.param_groups[0]["lr"], seconds=time.time() - t0)
            if r.eval_on_train:
                tr = open_detection(r.data, "train", fmt=r.data_format, masks=masks,
                                    transforms=detection_transform(False))
                row.update(_flat("train", evaluate(par.whole(model), tr, train_ds.num_classes, device=d.device, d=d,
                                                   masks=masks, class_names=train_ds.class_names, amp=r.amp)))
            run.log_metrics(row)
            if d.is_main:
                log.info("eval @ epoch %d: %s", done, "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                                 if "_AP" in k))
            ap = res["bbox"]["AP"]
            state = dict(task="detection", model=par.model_state(model), optimizer=par.optimizer_state(model, opt),
                         parallel=par.name, scheduler=sched.state_dict(), epoch=done, iter=it, best=max(best, ap),
                         recipe=dataclasses.asdict(r), num_classes=train_ds.num_classes,
                         class_names=list(train_ds.class_names), masks=masks, rng=rng_states())
            run.save("checkpoint-last.pt", state)
            if ap > best:
                best = ap
                run.save("checkpoint-best.pt", state)
            run.plot(("val_bbox_AP", "val_bbox_AP50", "train_bbox_AP"), curve)
            result = row
    return result


# ------------------------------------------------------------------------------ from a checkpoint
def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, DetRecipe, dict[str, Any]]:
    """Rebuild the detector a training run saved; returns (model in eval mode, recipe, metadata)."""
    state = _load(path)
    if state.get("task") != "detection":
        raise ValueError(f"{path} is not a detection checkpoint (task={state.get('task')!r})")
    fields = {f.name for f in dataclasses.fields(DetRecipe)}
    r = DetRecipe(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in state["recipe"].items() if k in fields})
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

"""Semantic segmentation: the training loop (iteration based, as UperNet's recipe), evaluation
(mIoU / pixel accuracy, whole or sliding window), and prediction overlays. The same command runs
under ``torchrun`` (DDP; each process takes ``batch_size / world`` crops; the confusion matrix is
summed over processes)."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .inference import predict_logits
from .recipes import SegRecipe
from .runtime import (DistInfo, Parallel, RunFolder, ShardSampler, autocast, check_finite, load_checkpoint as _load, param_groups,
                      per_rank_batch, restore_rng, rng_states, setup, teardown, train_sampler, unwrap, warmup_poly)
from .seg_data import IGNORE, EvalTransform, SegSpec, collate_pad, open_segmentation, train_transform
from .seg_metrics import SegMetric
from .upernet import Segmenter, build_segmenter

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
def evaluate(model: nn.Module, dataset: Dataset, num_classes: int, *, device: torch.device, d: DistInfo | None = None,
             mode: str = "whole", crop: Sequence[int] = (512, 512), stride: Sequence[int] = (341, 341),
             scales: Sequence[float] = (1.0,), flip: bool = False, batch_size: int = 1, workers: int = 0,
             amp: bool = False) -> dict[str, Any]:
    """mIoU, aAcc, mAcc and per-class IoU over ``dataset`` (labels at full resolution; use
    ``batch_size`` 1 unless all images share a size). Under DDP each process scores a shard."""
    d = d or DistInfo(device=device)
    model = unwrap(model)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), d.rank, d.world_size),
                        num_workers=workers, collate_fn=collate_pad)
    metric = SegMetric(num_classes, IGNORE)
    for x, y in loader:
        with autocast(device, amp):
            logits = predict_logits(model, x.to(device), num_classes=num_classes, mode=mode, crop=crop,
                                    stride=stride, scales=scales, flip=flip, out_size=y.shape[-2:])
        metric.update(logits.argmax(1).cpu(), y)
    model.train(was_training)
    return metric.compute()


def _checkpoint(model: nn.Module, opt: Any, sched: Any, it: int, best: float, r: SegRecipe,
                spec: SegSpec, par: Parallel) -> dict[str, Any]:
    """The run's state (a collective under DDP/FSDP: every process calls it; rank 0 writes it)."""
    return dict(task="segmentation", model=par.model_state(model), optimizer=par.optimizer_state(model, opt),
                parallel=par.name,
                scheduler=sched.state_dict(), iter=it, best=best, recipe=dataclasses.asdict(r),
                num_classes=spec.num_classes, class_names=list(spec.class_names),
                palette=[list(c) for c in spec.palette], void_values=list(spec.void_values),
                reduce_zero_label=spec.reduce_zero_label, rng=rng_states())


def train(r: SegRecipe, resume: bool = False) -> dict[str, Any]:
    """Train per ``r``; returns the last evaluation's scores. Writes the run folder ``r.out``."""
    d = setup(r.seed, r.threads)
    try:
        return _train(r, resume, d)
    finally:
        teardown()


def _train(r: SegRecipe, resume: bool, d: DistInfo) -> dict[str, Any]:
    if not r.data:
        raise ValueError("no data: pass data=PATH (a folder or .tar: ADE20K, CamVid or images/labels)")
    run = RunFolder(r.out, d.is_main)
    train_ds = open_segmentation(r.data, "train", fmt=r.data_format, num_classes=r.num_classes)
    spec = train_ds.spec
    model = build_model(r, spec.num_classes).to(d.device)
    cfg = model.pretrained_cfg
    mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
    train_ds.transform = train_transform(r.crop_size, r.base_size, r.scale_range, r.hflip, r.photometric, mean, std)
    val_ds = open_segmentation(r.data, "val", fmt=r.data_format, num_classes=r.num_classes,
                               transform=EvalTransform(r.base_size if r.test_resize else None, mean, std))
    if r.grad_checkpointing:
        model.backbone.set_grad_checkpointing(True)
    par = Parallel(r.parallel, d, sync_bn=True)
    model = par.shard(model)
    opt = torch.optim.AdamW(param_groups(model, r.weight_decay), lr=r.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_poly(r.iters, r.warmup_iters, r.warmup_ratio, r.poly_power))
    start, best, rng = 0, -1.0, None
    last = run.dir / "checkpoint-last.pt"
    if resume and last.exists():
        state = _load(last)
        par.load(model, opt, state, last)
        sched.load_state_dict(state["scheduler"])
        start, best, rng = state["iter"], state["best"], state.get("rng")
        log.info("resumed from %s at iteration %d", last, start)
    model = par.wrap(model)
    run.write_config(r)

    sampler = train_sampler(len(train_ds), d, r.seed, drop_last=True)
    per_rank = per_rank_batch(r.batch_size, d.world_size)
    ipe = sampler.num_samples // per_rank  # iterations per epoch
    if ipe == 0:
        raise ValueError(f"{len(train_ds)} training images cannot fill one batch of {r.batch_size}; lower batch_size")
    # its own generator: starting an epoch draws nothing from the global RNG (drop-path's stream)
    loader = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, num_workers=r.workers, collate_fn=collate_pad,
                        drop_last=True, pin_memory=d.device.type == "cuda", persistent_workers=r.workers > 0,
                        generator=torch.Generator())
    if d.is_main:
        n_params = sum(p.numel() for p in unwrap(model).parameters())
        log.info("segmentation: %s + UperNet, %.2f M parameters, %d classes, %d train / %d val images, "
                 "%d processes on %s", r.model, n_params / 1e6, spec.num_classes, len(train_ds), len(val_ds),
                 d.world_size, d.device)
    model.train()
    it, epoch, skip = start, start // ipe, start % ipe
    if rng is not None:
        restore_rng(rng, d.rank, d.world_size)
    losses: list[float] = []
    curve: list[tuple[int, float]] = []
    scores: dict[str, Any] = {}
    t0 = t_log = time.time()
    while it < r.iters:
        sampler.set_epoch(epoch, skip * per_rank)  # a resumed epoch starts after the crops already seen
        for x, y in loader:
            x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
            with autocast(d.device, r.amp):
                out, aux = model(x, return_aux=True)
            loss = seg_loss(out, aux, y, r.aux_weight)
            check_finite(loss, it)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if r.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), r.clip_grad)
            opt.step()
            sched.step()
            it += 1
            losses.append(loss.item())
            if d.is_main and (it % r.log_interval == 0 or it == r.iters):
                dt = time.time() - t_log
                rate = r.log_interval * r.batch_size / max(dt, 1e-9)
                eta = (r.iters - it) * (time.time() - t0) / max(it - start, 1)
                avg = float(np.mean(losses[-r.log_interval:]))
                curve.append((it, avg))
                log.info("iter %d/%d  loss %.4f  lr %.2e  %.1f img/s  eta %.0f min", it, r.iters, avg,
                         opt.param_groups[0]["lr"], rate, eta / 60)
                t_log = time.time()
            if it % r.eval_interval == 0 or it == r.iters:
                scores = evaluate(par.whole(model), val_ds, spec.num_classes, device=d.device, d=d, mode=r.eval_mode,
                                  crop=r.eval_crop, stride=r.eval_stride, batch_size=r.eval_batch_size,
                                  workers=min(r.workers, 1), amp=r.amp)
                row = dict(iter=it, epoch=it / ipe, train_loss=float(np.mean(losses)) if losses else None,
                           val_mIoU=scores["mIoU"], val_aAcc=scores["aAcc"], val_mAcc=scores["mAcc"],
                           val_iou=scores["iou"], lr=opt.param_groups[0]["lr"], seconds=time.time() - t0)
                run.log_metrics(row)
                losses = []
                if d.is_main:
                    log.info("eval @ %d: mIoU %.4f  aAcc %.4f  mAcc %.4f", it, scores["mIoU"], scores["aAcc"],
                             scores["mAcc"])
                state = _checkpoint(model, opt, sched, it, max(best, scores["mIoU"]), r, spec, par)
                run.save("checkpoint-last.pt", state)
                if scores["mIoU"] > best:
                    best = scores["mIoU"]
                    run.save("checkpoint-best.pt", state)
                run.plot(("val_mIoU", "val_aAcc"), curve)
            if it >= r.iters:
                break
        skip, epoch = 0, epoch + 1
    return scores


# ------------------------------------------------------------------------------ from a checkpoint
def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[Segmenter, SegRecipe, dict[str, Any]]:
    """Rebuild the segmenter a training run saved; returns (model in eval mode, recipe, metadata)."""
    state = _load(path)
    if state.get("task") != "segmentation":
        raise ValueError(f"{path} is not a segmentation checkpoint (task={state.get('task')!r})")
    fields = {f.name for f in dataclasses.fields(SegRecipe)}
    r = SegRecipe(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in state["recipe"].items() if k in fields})
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
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB")).copy()
        x, _ = tf(torch.from_numpy(rgb).permute(2, 0, 1), None)
        logits = predict_logits(model, x[None].to(device), num_classes=spec.num_classes, mode=mode,
                                crop=crop or r.eval_crop, stride=stride or r.eval_stride, out_size=rgb.shape[:2])
        pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        gt = None
        if labels and labels[i]:
            with Image.open(labels[i]) as im:
                gt = spec.lut[np.asarray(im)]
        stem = Path(path).stem
        Image.fromarray(pred).save(out_dir / f"{stem}.png")
        save_segmentation_figure(out_dir / f"{stem}_overlay.png", rgb, pred, spec.palette, gt, spec.class_names)
        written.append(out_dir / f"{stem}_overlay.png")
    return written

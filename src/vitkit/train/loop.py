"""The training loop, in one file: setup → epochs of steps → evaluate → checkpoint, resumable exactly.

    from vitkit.train import get_recipe, train
    result = train(get_recipe("mnist_demo"), "runs/demo")

Read top to bottom: `Trainer.__init__` builds data, model, optimiser, schedule and (on ``resume``)
restores every piece of state; `fit` runs the epochs; `_micro_step` is one forward/backward;
`_optimizer_step` clips, steps, schedules and updates the EMA; `_write_row` reports: evaluates and
writes the run folder. Only rank 0 writes files.

Exact resume at any instant: the run's state changes only at two commit points, the end of an
optimiser step and the end of a report (a metrics row with its evaluation), each in a stretch that
signals cannot cut (:class:`~vitkit.train.signals.StopSignals`). A checkpoint always describes the
last commit: its ``phase`` says whether the next thing to do is training (``"train"``) or the report
of steps already done (``"report"``: an interrupt during validation, or between the metrics row and
the checkpoints, resumes by doing that report again), and it carries the metrics rows it has seen,
the RNG states at the commit and the loss sums of the committed steps only. checkpoint-best.pt is
written before the checkpoint-last.pt that records it, so a crash between the two resumes to the
same report and writes the same best again. What is optimised and measured comes from a task
(:class:`~vitkit.train.tasks.ClassificationTask` by default), so other tasks reuse the loop.
"""
from __future__ import annotations

import contextlib
import errno
import inspect
import json
import logging
import math
import random
import signal
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import __version__
from ..data import MixupCutmix, ShardedSampler, build_dataset, collate, eval_transform, resolve_data, train_transform
from ..data.images import check_readable, report_unreadable
from ..layers.fastpath import fast_paths_enabled
from ..models.base import PretrainedCfg
from ..build import create_model, resolve_tag
from ..registry import get_entry
from ..weights import load_weights
from . import distributed as D
from .allocator import keep_freed_memory
from .checkpoint import get_rng_state, load_checkpoint, restore_rng, rng_states, save_atomic
from .config import TrainConfig, check_num_classes
from .ema import ModelEma
from .errors import Interrupted, NonFiniteLossError, RunFolderBusy, TrainingError  # noqa: F401  (re-exported)
from .fsdp import full_tensor
from . import loggers as run_loggers
from .optim import WarmupDecay, build_optimizer, param_groups
from .progress import ProgressBar, epoch_summary, format_metric, plot_curves, plural
from .runfolder import (RunLock, check_new_run_folder, check_same_data, data_fingerprint, read_run_doc,
                        remove_stale_temps)
from .signals import StopSignals
from .tasks import ClassificationTask, Task

log = logging.getLogger("vitkit.train")

# config fields that may change when a run is resumed although they change what it computes: the
# remedies for a run that diverged (the NaN stop's advice); the change is logged and kept in config.json
RESUME_CHANGEABLE = ("lr", "clip_grad")


@dataclass
class RunResult:
    out_dir: Path
    metrics: list[dict[str, Any]]
    best_metric: float | None
    global_step: int
    model: nn.Module = field(repr=False)


def build_model(cfg: TrainConfig, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """The model named by ``cfg.model`` with the run's overrides; returns it and its complete
    constructor record (``model.init_kwargs``, what checkpoints save so that ``vitkit eval`` rebuilds
    exactly this network: activation, stem numerics and every other option included)."""
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if cfg.img_size:
        kwargs["img_size"] = cfg.img_size
    if cfg.drop_path:
        kwargs["drop_path_rate"] = cfg.drop_path
    if cfg.dropout:
        kwargs["drop_rate"] = cfg.dropout
    for option in ("pos_embed", "global_pool"):  # model options that only some architectures have
        if getattr(cfg, option):
            if option not in inspect.signature(get_entry(resolve_tag(cfg.model)[0]).builder).parameters:
                raise ValueError(f"{option}={getattr(cfg, option)!r}: the model {cfg.model} has no such option "
                                 f"(ViT models have it); leave {option} empty")
            kwargs[option] = getattr(cfg, option)
    pretrained: bool | str = {"": False, "true": True, "false": False}.get(cfg.pretrained.lower(), cfg.pretrained)
    model = create_model(cfg.model, pretrained=pretrained, **kwargs)
    if cfg.weights:
        log.info("initial weights from %s: %s", cfg.weights, load_weights(model, cfg.weights))
    if cfg.zero_init_head:
        model.reset_classifier(num_classes)
    return model, dict(getattr(model, "init_kwargs", kwargs))


def model_record(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint keeps to rebuild ``model``: its registry name, every constructor argument
    (``init_kwargs``; ``model_kwargs_complete`` says the record is whole, so that
    ``create_model(model_name, **model_kwargs)`` is this network), its class, and its preprocessing
    record (``preprocess``: ``pretrained_cfg.to_dict()``). Models that are not vitkit models record
    what they can (``model_kwargs_complete`` False)."""
    kwargs = getattr(model, "init_kwargs", None)
    rec: dict[str, Any] = {
        "model_name": getattr(model, "model_name", type(model).__name__),
        "model_kwargs": dict(kwargs) if kwargs is not None else {},
        "model_kwargs_complete": kwargs is not None,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
    }
    pcfg = getattr(model, "pretrained_cfg", None)
    if pcfg is not None:
        rec["preprocess"] = pcfg.to_dict() if hasattr(pcfg, "to_dict") else dict(pcfg)
    return rec


def resolve_preprocessing(model: nn.Module | None, cfg: TrainConfig, classes: Sequence[str] = ()) -> PretrainedCfg:
    """The run's preprocessing record: the model's own (``model.pretrained_cfg``: for pretrained
    weights, the weights' mean/std/crop/interpolation, not the registry row's), with the run's
    overrides (``img_size``, ``crop_pct``, ``interpolation``) and its class names."""
    pcfg = getattr(model, "pretrained_cfg", None) if model is not None else None
    if pcfg is None:  # not a vitkit model: the row of cfg.model, as before models described themselves
        entry = get_entry(cfg.model)
        pcfg = PretrainedCfg.from_dict(dict(entry.pretrained_cfg, architecture=entry.name))
        chans = entry.kwargs.get("in_chans", 3)
        size = entry.kwargs.get("img_size", 224)
        pcfg.input_size = (chans, size, size)
    elif not isinstance(pcfg, PretrainedCfg):
        pcfg = PretrainedCfg.from_dict(dict(pcfg))
    else:
        pcfg = pcfg.copy()
    chans = int(pcfg.input_size[0])
    if len(pcfg.mean) != chans:
        pcfg.mean, pcfg.std = (0.5,) * chans, (0.5,) * chans
    if cfg.img_size:
        pcfg.input_size = (chans, cfg.img_size, cfg.img_size)
    if cfg.crop_pct:
        pcfg.crop_pct = cfg.crop_pct
    if cfg.interpolation:
        pcfg.interpolation = cfg.interpolation
    if classes:
        pcfg.labels, pcfg.label_set, pcfg.num_classes = list(classes), None, len(classes)
    return pcfg


class Trainer:
    """One training run of ``cfg`` into ``out_dir``. ``model``, ``train_set``, ``val_set`` and ``task``
    replace what ``cfg`` would build; ``callbacks`` are called with the trainer after every
    optimiser step (to log, or to stop a run by raising).

    Preprocessing (mean, std, interpolation, eval crop, input channels and size) comes from the
    model's own record, ``model.pretrained_cfg`` (for pretrained weights: the weights'), with
    ``cfg.img_size`` / ``crop_pct`` / ``interpolation`` overriding it when set; the model's record is
    then replaced by that run's record (labels: the data's classes), which checkpoints save.

    What constructing a Trainer touches: it opens the datasets it builds (lists the files, decodes
    no image), builds the model (``pretrained``: weights from the cache, downloaded when missing),
    and on rank 0 creates ``out_dir`` with ``config.json`` and an empty ``metrics.jsonl``; with
    ``resume`` it reads ``checkpoint-last.pt`` instead and trims ``metrics.jsonl`` to it. Nothing
    else is written before :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, recipe: str = "",
                 model: nn.Module | None = None, train_set: Dataset | None = None, val_set: Dataset | None = None,
                 task: Task | None = None, callbacks: Sequence[Callable[["Trainer"], None]] = ()) -> None:
        self.cfg, self.recipe, self.callbacks = cfg.validate(), recipe, list(callbacks)
        self.out = Path(out_dir)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dist = D.init_distributed(cfg.device)
        self.device = self.dist.device
        if self.device.type == "cpu" and fast_paths_enabled():  # vitkit.fast_paths: the one speed switch
            keep_freed_memory()  # no page faults for each step's fresh activations: 10-20% per step here
        W = self.dist.world_size
        _seed_everything(cfg.seed)  # identical model initialisation on every rank

        self.pretrained_cfg: PretrainedCfg | None = None
        if task is not None and callable(getattr(task, "build", None)):
            # ---- a task that brings its own data and model (segmentation, detection: vitkit.dense)
            train_set, val_set, model = task.build(self.dist, model=model, train_set=train_set, val_set=val_set)
            self.classes = list(getattr(task, "class_names", None) or [])
            num_classes = int(getattr(task, "num_classes", 0) or len(self.classes))
            pcfg = getattr(model, "pretrained_cfg", None)
            self.pretrained_cfg = pcfg if isinstance(pcfg, PretrainedCfg) else None
            self.preprocess = pcfg.to_dict() if isinstance(pcfg, PretrainedCfg) else {}
            self.model_record = model_record(model)
            if not hasattr(model, "model_name"):  # a segmenter/detector: the run's model (backbone) name
                self.model_record["model_name"] = cfg.model
            self.model_kwargs = self.model_record["model_kwargs"]
            img_size = int(self.preprocess.get("input_size", (0, 0))[-1])
        else:
            # ---- data, opened without transforms: the model needs the number of classes, the transforms
            # need the model's preprocessing record (resolve: rank 0 first, it may unpack an archive)
            # input channels: the given model's record, else cfg.model's row (TrainConfig cannot change them)
            in_chans = int(resolve_preprocessing(model, cfg).input_size[0])
            own_train, own_val = train_set is None, val_set is None
            if own_train or own_val:
                if not self.dist.is_main:
                    D.barrier()
                src = resolve_data(cfg.data, data_root=cfg.data_root or None, download=cfg.data_download)
                if self.dist.is_main:
                    D.barrier()
                mode = "L" if in_chans == 1 else "RGB"
                if own_train:
                    train_set = build_dataset(src, "train", None, mode=mode, val_fraction=cfg.val_fraction)
                    if cfg.train_examples:
                        train_set = _random_subset(train_set, cfg.train_examples, cfg.seed)
                if own_val:
                    val_set = build_dataset(src, cfg.eval_split, None, mode=mode, val_fraction=cfg.val_fraction)
            self.classes = list(getattr(train_set, "classes", []))
            num_classes = cfg.num_classes or len(self.classes)
            if num_classes < 1:
                raise ValueError("num_classes could not be taken from the data; set num_classes=K")

            # ---- the model, and the preprocessing it asks for (its pretrained_cfg: the weights' record)
            check_num_classes(cfg.num_classes, self.classes, getattr(model, "num_classes", None))
            check_readable(train_set, "training")
            check_readable(val_set, "validation")
            if model is None:
                model, _ = build_model(cfg, num_classes)
            pcfg = resolve_preprocessing(model, cfg, self.classes)
            if hasattr(model, "pretrained_cfg"):
                model.pretrained_cfg = pcfg  # the trained model describes its preprocessing as trained
            self.pretrained_cfg = pcfg
            self.preprocess = pcfg.to_dict()
            self.model_record = model_record(model)  # before sharding: FSDP changes the module's class
            self.model_kwargs = self.model_record["model_kwargs"]
            if not hasattr(model, "model_name"):
                self.model_record["model_name"] = cfg.model
            img_size = int(pcfg.input_size[-1])
            mean, std, interp = pcfg.mean, pcfg.std, pcfg.interpolation
            if own_train:
                train_set.transform = train_transform(
                    img_size, mean=mean, std=std, preset=cfg.augment, interpolation=interp, scale=cfg.scale,
                    hflip=cfg.hflip, randaugment=cfg.randaugment, randaugment_ops=cfg.randaugment_ops,
                    random_erasing=cfg.random_erasing)
            if own_val:
                val_set.transform = eval_transform(img_size, mean=mean, std=std, interpolation=interp,
                                                   crop_pct=pcfg.crop_pct)

        # ---- batch geometry: global batch = world × accumulation × micro-batch
        if cfg.batch_size % (W * cfg.accum_steps):
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by world_size × accum_steps = "
                             f"{W} × {cfg.accum_steps}; change batch_size or accum_steps")
        self.micro = cfg.batch_size // (W * cfg.accum_steps)
        self.steps_per_epoch = (len(train_set) // W) // (self.micro * cfg.accum_steps)
        if self.steps_per_epoch < 1:
            raise ValueError(f"the training split has {len(train_set)} images, fewer than one batch of "
                             f"batch_size={cfg.batch_size}; lower batch_size")
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.sampler = ShardedSampler(len(train_set), num_replicas=W, rank=self.dist.rank, shuffle=True,
                                      seed=cfg.seed, num_samples=self.steps_per_epoch * cfg.accum_steps * self.micro)
        loader_kw = dict(num_workers=cfg.num_workers, collate_fn=getattr(task, "collate", None) or collate,
                         pin_memory=self.device.type == "cuda", persistent_workers=cfg.num_workers > 0)
        # the loader gets its own generator so that starting an epoch draws nothing from the global RNG
        self.train_loader = DataLoader(train_set, batch_size=self.micro, sampler=self.sampler, drop_last=True,
                                       generator=torch.Generator(), **loader_kw)
        val_shard = list(range(self.dist.rank, len(val_set), W))  # no padding: every image counted once
        if callable(getattr(task, "val_loader", None)):
            self.val_loader = task.val_loader(val_set, val_shard)
        else:
            self.val_loader = DataLoader(val_set, batch_size=max(self.micro, 64), sampler=val_shard, **loader_kw)
        self.train_set, self.val_set = train_set, val_set

        # ---- precision, wrappers
        self.model = model.to(self.device)
        if cfg.grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = _amp_dtype(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEma(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        # DDP, or FSDP (vitkit.train.fsdp); batch norms synchronised across processes when the task asks
        self.parallel = D.Parallel(cfg.parallel, self.dist, sync_bn=bool(getattr(task, "sync_bn", False)))
        self.model = self.parallel.shard(self.model)
        wrapped = self.parallel.wrap(self.model)
        self.ddp = wrapped if wrapped is not self.model else None
        self.forward_model: nn.Module = wrapped
        if cfg.compile:
            self.forward_model = torch.compile(self.forward_model)
        mixup = MixupCutmix(num_classes, cfg.mixup, cfg.cutmix, cfg.mixup_prob) if cfg.mixup or cfg.cutmix else None
        self.task: Task = task or ClassificationTask(num_classes, label_smoothing=cfg.label_smoothing, mixup=mixup,
                                                     class_names=self.classes or None)

        # ---- optimiser and schedule (lr optionally given per lr_base_batch images, scaled linearly)
        self.lr = cfg.lr * cfg.batch_size / cfg.lr_base_batch if cfg.lr_base_batch else cfg.lr
        groups = param_groups(self.model, cfg.weight_decay, cfg.layer_decay)
        self.optimizer = build_optimizer(groups, cfg.optimizer, self.lr, momentum=cfg.momentum, betas=cfg.betas)
        self.warmup_steps = cfg.warmup_steps or round(cfg.warmup_epochs * self.steps_per_epoch)
        own_schedule = getattr(self.task, "lr_lambda", None)
        self.schedule = own_schedule(self.total_steps, self.steps_per_epoch) if callable(own_schedule) else None
        if self.schedule is None:
            self.schedule = WarmupDecay(self.total_steps, self.warmup_steps, cfg.schedule,
                                        start=cfg.warmup_lr / self.lr, end=cfg.min_lr / self.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        # >0: evaluate, write a metrics row and the checkpoints every this many steps (and after the
        # last), iteration-based runs such as UperNet's; 0: at the end of every cfg.eval_every epochs
        self.eval_interval = int(getattr(self.task, "eval_interval", 0) or 0)

        # ---- position and bookkeeping (restored on resume; changed only at the two commit points)
        self.epoch = 0              # completed epochs
        self.step_in_epoch = 0      # optimiser steps done in the current epoch
        self.global_step = 0
        self.phase = "train"        # "report": the steps done await their metrics row, evaluation, checkpoints
        self.best_metric: float | None = None
        self.best_step: int | None = None  # the step whose weights checkpoint-best.pt holds
        self.metrics: list[dict[str, Any]] = []
        self.epoch_stats = _zero_stats()   # committed steps since the last metrics row
        self._step_stats = _zero_stats()   # the micro-batches of the step in progress (committed with it)
        _seed_everything(cfg.seed + self.dist.rank)  # dropout, drop-path, Mixup differ across ranks
        self._boundary_rng = get_rng_state()  # the generators at the last commit: what a checkpoint saves
        self.grad_norm = 0.0
        self._last_batch: Any = None
        self.signals: StopSignals | None = None
        self._plotted = -1  # rows drawn in curves.png
        self._num_classes, self._img_size = num_classes, img_size
        self._resume_changes: dict[str, tuple[Any, Any]] = {}
        self.data_fingerprint = {"train": data_fingerprint(train_set), "val": data_fingerprint(val_set)}
        self._lock = RunLock(self.out) if self.dist.is_main else None
        try:
            self._open_run_folder(resume)
        except BaseException:
            self._release_lock()
            raise
        if self._lock is not None:
            weakref.finalize(self, self._lock.release)  # a Trainer that is never fit() lets the folder go

    def _open_run_folder(self, resume: bool) -> None:
        """Rank 0 takes the folder's lock (a second writer is refused, naming the holder) and removes
        the temp files of saves that a killed process left; then the run continues from
        checkpoint-last.pt (``resume``) or starts in a folder that is new, empty, or a vitkit run of
        the same task and recipe, with config.json and an empty metrics.jsonl."""
        self._resumed = resume
        if self._lock is not None:
            self._lock.acquire()
            remove_stale_temps(self.out)
        if resume:
            self._load_state(self.out / "checkpoint-last.pt")
        elif self.dist.is_main:
            check_new_run_folder(self.out, self._task_name(), self.recipe)
            (self.out / "metrics.jsonl").write_text("")
            self._write_config(self._num_classes, self._img_size)

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _task_name(self) -> str:
        return getattr(self.task, "name", "classification")

    # ------------------------------------------------------------------------------------ the run
    def fit(self) -> RunResult:
        cfg, start, first_step = self.cfg, time.time(), self.global_step
        self._t_start, self._first_step = start, first_step
        if self.dist.is_main:
            resuming = f", resuming at epoch {self.epoch + 1} step {self.global_step}" if self.global_step else ""
            describe = getattr(self.task, "describe", None)
            if callable(describe):
                log.info("%s; %d steps (%d an epoch), batch %d, lr %.3g, %s on %s%s", describe(self), self.total_steps,
                         self.steps_per_epoch, cfg.batch_size, self.lr, _precision_name(self.amp_dtype), self.device,
                         resuming)
            else:
                log.info("training %s on %s: %d train / %d val images, %d classes, %s × %s, batch %d "
                         "(%s × %d accumulation × %d), lr %.3g, %s on %s%s", cfg.model, cfg.data,
                         len(self.train_loader.dataset), len(self.val_loader.dataset), len(self.classes) or -1,
                         plural(self.num_epochs, "epoch"), plural(self.steps_per_epoch, "step"), cfg.batch_size,
                         plural(self.dist.world_size, "rank"), cfg.accum_steps,
                         self.micro, self.lr, _precision_name(self.amp_dtype), self.device, resuming)
        if self._lock is not None and not self._lock.held:  # fit() again after a run: the folder again
            self._lock.acquire()
        try:
            with StopSignals(raise_now=not self.dist.enabled) as self.signals:
                try:
                    self._run()
                except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM (Interrupted), or raised by a callback
                    self._save_interrupted(e)
                    raise
        finally:
            self.signals = None
            self._release_lock()
        if self.dist.is_main:
            best = f"best {format_metric(self.task.main_metric, self.best_metric)}, " if self.best_metric is not None else ""
            log.info("done: %s%d steps in %.1fs; run folder %s", best, self.global_step, time.time() - start, self.out)
            if cfg.push_to_hub:  # the finished run as a timm-format repo (as `vitkit hub-export` does later)
                from ..weights.hub_export import push_run

                log.info("pushed to %s", push_run(self.out, cfg.push_to_hub))
        return RunResult(self.out, self.metrics, self.best_metric, self.global_step, self.model)

    def _run(self) -> None:
        """Train and report until the last step's report is done (a resumed run starts where its
        checkpoint's ``phase`` says: training, or the report of steps already done)."""
        while True:
            if self.phase == "report":
                self._write_row()
                self._check_stop()
            elif self.epoch < self.num_epochs and self.global_step < self.total_steps:
                self._train_epoch()
            else:
                break
        if self.dist.is_main and self._plotted != len(self.metrics):  # e.g. stopped while drawing the last plot
            self._plot()

    def _check_stop(self) -> None:
        """Stop the run when a process received SIGTERM/SIGINT. Under torchrun the processes compare
        their records after every step and report (one small all-reduce), so that all stop at the
        same step and take part in the save together; one process raised at the signal already."""
        sig = (self.signals.received if self.signals is not None else None) or 0
        if self.dist.enabled:
            t = torch.tensor([float(sig)], device=self.device)
            D.all_reduce_max(t)
            sig = int(t.item())
        if sig:
            raise Interrupted(sig, agreed=True)

    def _save_interrupted(self, e: KeyboardInterrupt) -> None:
        """Save the last commit (the step before the one that was cut, or the report still to do) and
        say so. Several processes save only when they stopped together (:meth:`_check_stop`): a
        KeyboardInterrupt from elsewhere may have left some of them inside a collective."""
        signum = getattr(e, "signum", None)
        what = f"received {signal.Signals(signum).name}" if signum else "interrupted"
        if self.dist.enabled and not getattr(e, "agreed", False):
            if self.dist.is_main:
                log.warning("%s at step %d; not saved (the processes had not stopped together); %s holds the last "
                            "periodic save", what, self.global_step, self.out / "checkpoint-last.pt")
            return
        self._save_last()
        if self.dist.is_main:
            with _disk_full_guard(self.out / "metrics.jsonl"):  # the rows of that state, none cut in half
                (self.out / "metrics.jsonl").write_text(self._metrics_text())
            where = ("the report of those steps (evaluation, metrics row, checkpoints) still to do"
                     if self.phase == "report" else
                     f"epoch {self.epoch + 1}, {self.step_in_epoch} of {self.steps_per_epoch} steps done")
            log.warning("%s: saved %s at step %d (%s); continue with: vitkit train --out %s --resume", what,
                        self.out / "checkpoint-last.pt", self.global_step, where, self.out)

    def _critical(self) -> contextlib.AbstractContextManager:
        return self.signals.critical() if self.signals is not None else contextlib.nullcontext()

    def _seconds_per_step(self) -> float:
        return (time.time() - self._t_start) / max(self.global_step - self._first_step, 1)

    def _train_epoch(self) -> None:
        cfg, A = self.cfg, self.cfg.accum_steps
        self.sampler.set_epoch(self.epoch, start=self.step_in_epoch * A * self.micro)
        self.forward_model.train()
        steps_now = min(self.steps_per_epoch, self.total_steps - self.global_step + self.step_in_epoch)  # max_steps may end it early
        bar = ProgressBar(steps_now * cfg.batch_size, f"epoch {self.epoch + 1}/{self.num_epochs}",
                          enabled=cfg.progress and self.dist.is_main, initial=self.step_in_epoch * cfg.batch_size)
        t_last = time.time()
        self._step_stats = _zero_stats()
        for k, batch in enumerate(self.train_loader):
            last_micro = (k + 1) % A == 0
            self._micro_step(batch, sync=last_micro)
            if not last_micro:
                continue
            now = time.time()
            self._step_stats["seconds"] = now - t_last
            self._optimizer_step()
            t_last = now
            s = self.epoch_stats
            bar.update(cfg.batch_size, loss=s["loss_sum"] / max(s["samples"], 1), lr=self._lr(), gnorm=self.grad_norm)
            if self.phase == "report" and self.eval_interval:
                self._write_row()
                self.forward_model.train()
                t_last = time.time()  # the evaluation's time is not training time
            elif cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                self._save_last()
            for cb in self.callbacks:
                cb(self)
            run_loggers.on_step(self)  # steps.jsonl, TensorBoard (vitkit.train.loggers)
            self._check_stop()
            if self.phase == "report" or self.step_in_epoch == 0 or self.global_step >= self.total_steps:
                break  # a report is due (per-epoch runs: from fit), or the epoch is over
        bar.close()

    def _micro_step(self, batch: Any, sync: bool) -> None:
        """Forward and backward of one micro-batch; gradients are all-reduced only when ``sync``."""
        skipped = batch.get("skipped", []) if isinstance(batch, dict) else []
        if skipped:
            self._step_stats["skipped"] += len(skipped)
            for s in skipped[:3]:
                log.warning("skipped unreadable image %s (%s)", s.source, s.error)
        batch = self.task.to_device(batch, self.device, self.cfg.channels_last)
        no_sync = self.ddp.no_sync() if self.ddp is not None and not sync else contextlib.nullcontext()
        if self.parallel.fsdp:
            self.model.set_requires_gradient_sync(sync)  # accumulate locally, reduce-scatter on the last micro-batch
        try:
            with no_sync:
                with self._autocast():
                    if isinstance(batch, dict) and len(batch.get("target", [0])) == 0:  # every image unreadable:
                        # a zero-weighted pass over the previous batch keeps DDP's backward in step
                        loss = (self.task.training_loss(self.forward_model, self._last_batch)[0] if self._last_batch
                                else sum(p.sum() for p in self.model.parameters())) * 0.0
                        n = 0
                    else:
                        loss, n = self.task.training_loss(self.forward_model, batch)
                        self._last_batch = batch
                self._check_loss(loss, n)
                self.scaler.scale(loss / self.cfg.accum_steps).backward()
        except torch.OutOfMemoryError as e:
            raise TrainingError(
                f"CUDA out of memory at step {self.global_step + 1} with a micro-batch of {self.micro} images at "
                f"{self.preprocess.get('input_size', [0])[-1]}px on {self.device}. Lower the memory per step: raise "
                f"accum_steps (now {self.cfg.accum_steps}; the global batch_size stays), set grad_checkpointing=true, "
                f"precision=bf16, or lower batch_size / img_size. ({str(e).splitlines()[0]})") from None

    def _check_loss(self, loss: torch.Tensor, n: int) -> None:
        """Sum the loss over ranks (for the log, and so that every rank stops together) and stop the run
        on NaN/inf before it reaches the weights: checkpoint-last.pt keeps the last good state."""
        stat = torch.stack([loss.detach().float() * n, torch.tensor(float(n), device=loss.device)])
        D.all_reduce_sum(stat)
        total, count = stat.tolist()
        if not math.isfinite(total):
            raise NonFiniteLossError(self._stop_message(f"the loss is {total}"))
        self._step_stats["loss_sum"] += total  # committed with the optimiser step (an interrupted one never counts)
        self._step_stats["samples"] += int(count)

    def _stop_message(self, what: str) -> str:
        last = self.out / "checkpoint-last.pt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        return (f"{what} at step {self.global_step + 1} (epoch {self.epoch + 1}, step {self.step_in_epoch + 1} of "
                f"{self.steps_per_epoch}); the run stopped before updating the weights and {kept}. "
                + self._divergence_advice())

    def _divergence_advice(self) -> str:
        """What to do about a diverged run: lr and clip_grad may change on resume (RESUME_CHANGEABLE)."""
        lower = f"lr={self.cfg.lr / 10:.3g} clip_grad={self.cfg.clip_grad if 0 < self.cfg.clip_grad < 1 else 1:g}"
        fresh = "lengthen the warm-up or use precision=fp32 and start a new run"
        if not (self.out / "checkpoint-last.pt").exists():
            return f"Lower lr (now {self.lr:.3g}), set clip_grad=1, {fresh.replace(' and start', ', and start')}."
        return (f"Continue from it with a lower lr (now {self.lr:.3g}) and gradient clipping: vitkit train --out "
                f"{self.out} --resume {lower} (lr and clip_grad may change on resume); or {fresh}.")

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)  # a no-op unless fp16
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.clip_grad > 0:
            norm = nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        else:
            norm = nn.utils.get_total_norm([p.grad for p in params])
        self.grad_norm = float(full_tensor(norm))  # FSDP: a sharded norm, gathered
        if not math.isfinite(self.grad_norm) and not self.scaler.is_enabled():  # fp16: the scaler skips the step
            raise NonFiniteLossError(self._stop_message(f"the gradient norm is {self.grad_norm}"))
        with self._critical():  # commit point: the weights and the counters that describe them change together
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.global_step += 1
            self.step_in_epoch += 1
            for k, v in self._step_stats.items():
                self.epoch_stats[k] += v
            self._step_stats = _zero_stats()
            if self._report_due():
                self.phase = "report"
            elif self.step_in_epoch >= self.steps_per_epoch:
                self.epoch, self.step_in_epoch = self.epoch + 1, 0
            self._boundary_rng = get_rng_state()

    def _report_due(self) -> bool:
        """A metrics row is due after this step: the last step, every ``eval_interval`` steps
        (iteration-based tasks), or (per-epoch runs) the last step of an epoch."""
        if self.global_step >= self.total_steps:
            return True
        if self.eval_interval:
            return self.global_step % self.eval_interval == 0
        return self.step_in_epoch >= self.steps_per_epoch

    def _write_row(self) -> None:
        """The report of the steps done (``phase`` "report"): one metrics row (training loss since the
        last row; the validation metrics every ``eval_every`` epochs, after the last, and at every
        row of iteration-based runs), then checkpoint-best.pt when the main metric improved, the
        commit (the row counted, the epoch advanced when it ended), metrics.jsonl, checkpoint-last.pt
        and curves.png. An interrupt before the commit resumes to this report again."""
        cfg, s = self.cfg, self.epoch_stats
        ends_epoch = self.step_in_epoch >= self.steps_per_epoch or self.global_step >= self.total_steps
        epochs_done = self.epoch + 1 if ends_epoch else self.epoch
        last = self.global_step >= self.total_steps or (not self.eval_interval and epochs_done >= self.num_epochs)
        evaluate = bool(self.eval_interval) or epochs_done % cfg.eval_every == 0 or last
        epoch: float = epochs_done if not self.eval_interval else self.global_step / self.steps_per_epoch
        row: dict[str, Any] = {"epoch": epoch, "step": self.global_step}
        if self.eval_interval:
            row["iter"] = self.global_step  # the unit of iteration-based recipes
        row["train_loss"] = s["loss_sum"] / max(s["samples"], 1)
        weights_from, metric = "model", None
        if evaluate:
            row.update(self.task.evaluate(self.parallel.whole(self.model), self.val_loader, self.device,
                                          self._autocast, cfg.channels_last))
            metric = row.get(self.task.main_metric)
            if self.ema is not None:
                ema = self.task.evaluate(self.ema.module, self.val_loader, self.device, self._autocast, cfg.channels_last)
                row.update({f"ema_{k}": v for k, v in ema.items()})
                if ema.get(self.task.main_metric, -math.inf) > (metric if metric is not None else -math.inf):
                    weights_from, metric = "ema", ema[self.task.main_metric]
        row.update(lr=self._lr(), seconds=s["seconds"],
                   images_per_second=s["samples"] / s["seconds"] if s["seconds"] else None, skipped=s["skipped"])
        is_best = metric is not None and (self.best_metric is None or metric > self.best_metric)
        if is_best:  # before checkpoint-last.pt records it: a crash between leaves last before this report
            weights = self.ema.module.state_dict() if weights_from == "ema" else self.parallel.model_state(self.model)
            if self.dist.is_main:
                self._save({**self._meta(epoch=epochs_done), "model": weights, "weights_from": weights_from,
                            "metrics": row}, self.out / "checkpoint-best.pt")
        with self._critical():  # commit point: the report is done
            self.metrics.append(row)
            if is_best:
                self.best_metric, self.best_step = metric, self.global_step
            self.epoch_stats = _zero_stats()
            if ends_epoch:
                self.epoch, self.step_in_epoch = epochs_done, 0
            self.phase = "train"
            self._boundary_rng = get_rng_state()  # after the evaluation's draws (its loader's seed)
        if self.dist.is_main:
            with _disk_full_guard(self.out / "metrics.jsonl"), open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            eta = self._seconds_per_step() * (self.total_steps - self.global_step)
            log.info(epoch_summary(row, self.num_epochs, eta if not last else None))
            report_unreadable("training", s["skipped"], s["samples"] + s["skipped"], f"epoch {epochs_done}",
                              stop=False)
            report_unreadable("validation", row.get("val_skipped", 0), len(self.val_set), f"epoch {epochs_done}",
                              stop=False)
        run_loggers.on_row(self, row)  # TensorBoard and other trackers (vitkit.train.loggers)
        self._save_last()
        if self.dist.is_main:
            self._plot()

    def _plot(self) -> None:
        keys = getattr(self.task, "curve_keys", None)
        plot_curves(self.metrics, self.out / "curves.png", x="step" if self.eval_interval else "epoch",
                    title=f"{self.model_record['model_name']} on {getattr(self.task, 'data_name', self.cfg.data)}",
                    **({"metric_keys": tuple(keys)} if keys else {}))
        self._plotted = len(self.metrics)

    # ---------------------------------------------------------------------------- state in and out
    def _meta(self, **override: Any) -> dict[str, Any]:
        meta = {**self.model_record, "task": self._task_name(),
                "preprocess": self.preprocess, "classes": self.classes, "config": self.cfg.to_dict(),
                "recipe": self.recipe, "epoch": self.epoch, "global_step": self.global_step,
                "vitkit_version": __version__}
        extra = getattr(self.task, "checkpoint_meta", None)
        if callable(extra):
            meta.update(extra())  # e.g. segmentation: class names, palette, void values; its recipe as "config"
        meta.update(override)
        return meta

    def _save(self, obj: dict[str, Any], path: Path) -> None:
        with _disk_full_guard(path):
            save_atomic(obj, path)

    def _metrics_text(self) -> str:
        return "".join(json.dumps(r) + "\n" for r in self.metrics)

    def _save_last(self) -> None:
        """checkpoint-last.pt: the last commit, everything needed to continue exactly: weights,
        optimiser, schedule, every rank's generators at the commit, the position and ``phase``, the
        committed loss sums, the metrics rows so far, and the data's fingerprint."""
        rngs = rng_states(self._boundary_rng)
        model_state = self.parallel.model_state(self.model)
        optimizer_state = self.parallel.optimizer_state(self.model, self.optimizer)
        if not self.dist.is_main:
            return
        bad = [n for n, p in model_state.items() if p.is_floating_point() and not torch.isfinite(p).all()]
        if bad:  # never replace a good checkpoint by a broken one
            raise NonFiniteLossError(f"the weights became non-finite at step {self.global_step} ({bad[0]}, …); "
                                     f"{self.out / 'checkpoint-last.pt'} was left as it was. "
                                     + self._divergence_advice())
        state = {**self._meta(), "model": model_state, "optimizer": optimizer_state,
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "step_in_epoch": self.step_in_epoch, "phase": self.phase, "best_metric": self.best_metric,
                 "best_step": self.best_step, "epoch_stats": dict(self.epoch_stats), "rng": rngs,
                 "world_size": self.dist.world_size, "parallel": self.parallel.name,
                 "metrics_jsonl": self._metrics_text(), "data": self.data_fingerprint}
        if self.ema is not None:
            state["model_ema"] = self.ema.state_dict()
        self._save(state, self.out / "checkpoint-last.pt")

    def _load_state(self, path: Path) -> None:
        ck = load_checkpoint(path)
        check_same_data(ck.get("data"), self.data_fingerprint, path)  # before a head of another size fails to load
        self.parallel.load(self.model, self.optimizer, ck, path)
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        if self.ema is not None:
            if "model_ema" not in ck:
                raise ValueError(f"{path} has no EMA state but ema_decay={self.cfg.ema_decay}; resume with ema_decay=0")
            self.ema.load_state_dict(ck["model_ema"])
        self.epoch, self.step_in_epoch, self.global_step = ck["epoch"], ck["step_in_epoch"], ck["global_step"]
        # checkpoints before "phase": written after an epoch's last step but before its report, or after it
        self.phase = ck.get("phase") or ("report" if self.step_in_epoch >= self.steps_per_epoch else "train")
        self.best_metric, self.epoch_stats = ck["best_metric"], {**_zero_stats(), **dict(ck["epoch_stats"])}
        self.best_step = ck.get("best_step")
        restore_rng(ck["rng"], self.dist.rank, self.dist.world_size)
        self._boundary_rng = get_rng_state()
        self.recipe = self.recipe or ck.get("recipe", "")
        self._apply_resume_changes(ck)
        self.metrics = self._resumed_rows(ck)
        if self.dist.is_main:
            metrics_path = self.out / "metrics.jsonl"  # exactly the rows this checkpoint has seen
            text = self._metrics_text()
            if not metrics_path.is_file() or metrics_path.read_text() != text:
                metrics_path.write_text(text)
            self._check_best_pair(path)
            if read_run_doc(self.out) is None:
                log.warning("%s is missing or damaged; wrote it again from %s", self.out / "config.json", path)
                self._write_config(self._num_classes, self._img_size)
            elif self._resume_changes:
                self._write_config(self._num_classes, self._img_size)

    def _check_best_pair(self, last: Path) -> None:
        """Say when checkpoint-best.pt is not the best that checkpoint-last.pt records (``best_step``):
        missing, or written after it (the run stopped between the two writes: the resumed run writes
        it again when it reaches that report). Only its metadata is read (memory-mapped)."""
        path = self.out / "checkpoint-best.pt"
        if not path.is_file():
            if self.best_metric is not None:
                log.warning("%s is missing (the run's best, %s %.4f at step %s); it is written again when a later "
                            "report beats it", path, self.task.main_metric, self.best_metric, self.best_step)
            return
        try:
            step = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("global_step")
        except Exception:  # noqa: BLE001  (a damaged best is reported where it is loaded)
            return
        if step is not None and step > self.global_step:
            log.warning("%s holds step %d, after %s (step %d): the run stopped between the two writes; it is "
                        "written again when the resumed run reaches that report", path, step, last.name,
                        self.global_step)
        elif step is not None and self.best_step is not None and step != self.best_step:
            log.warning("%s holds step %d but %s records the best at step %d", path, step, last.name, self.best_step)

    def _apply_resume_changes(self, ck: dict[str, Any]) -> None:
        """lr and clip_grad may differ from the checkpoint's (the remedies for a diverged run): clip_grad
        is read at every step; a new lr becomes the schedule's base from the resumed step on (the
        schedule's shape, warm-up and min_lr unchanged). The change is logged and config.json keeps it."""
        saved = ck.get("config") if isinstance(ck.get("config"), dict) else {}
        self._resume_changes = {k: (saved[k], getattr(self.cfg, k)) for k in RESUME_CHANGEABLE
                                if k in saved and hasattr(self.cfg, k) and saved[k] != getattr(self.cfg, k)}
        if "lr" in self._resume_changes:
            groups = self.optimizer.param_groups
            self.scheduler.base_lrs = [self.lr * g.get("lr_scale", 1.0) for g in groups]
            self.scheduler.lr_lambdas = [self.schedule] * len(groups)  # the schedule for the new lr, not the saved one
            for g, base in zip(groups, self.scheduler.base_lrs):
                g["initial_lr"] = base
                g["lr"] = base * self.schedule(self.scheduler.last_epoch)
            self.scheduler._last_lr = [g["lr"] for g in groups]
        if self._resume_changes and self.dist.is_main:
            log.info("resuming at step %d with %s", self.global_step,
                     ", ".join(f"{k} {new:g} (was {old:g})" for k, (old, new) in self._resume_changes.items()))

    def _resumed_rows(self, ck: dict[str, Any]) -> list[dict[str, Any]]:
        """The metrics rows of the checkpoint's state: its own copy, or (older checkpoints) the rows
        of metrics.jsonl up to it; a last line cut short by a crash is dropped with a warning."""
        if isinstance(ck.get("metrics_jsonl"), str):
            return [json.loads(line) for line in ck["metrics_jsonl"].splitlines() if line.strip()]
        path, rows = self.out / "metrics.jsonl", []
        lines = path.read_text().splitlines() if path.is_file() else []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                if i < len(lines):
                    raise ValueError(f"{path} line {i} is not JSON ({line[:60]!r}); repair or delete that line, "
                                     f"then --resume again") from None
                log.warning("%s: dropped its last line, cut short by a crash (%r)", path, line[:60])
        done = self.global_step
        return [r for r in rows if r["step"] < done or (r["step"] == done and self.phase == "train")]

    def _write_config(self, num_classes: int, img_size: int) -> None:
        resolved = {"num_classes": num_classes, "img_size": img_size, "classes": self.classes, "lr": self.lr,
                    "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
                    "warmup_steps": self.warmup_steps, "epochs": self.num_epochs, "world_size": self.dist.world_size,
                    "micro_batch": self.micro, "device": str(self.device), "precision": _precision_name(self.amp_dtype),
                    "preprocess": self.preprocess, "train_images": len(self.train_loader.dataset),
                    "val_images": len(self.val_loader.dataset), "torch": torch.__version__, "vitkit": __version__,
                    "task": self._task_name(), "recipe": self.recipe, "data": self.data_fingerprint}
        prev = read_run_doc(self.out) if self._resumed else None  # a new run starts its own history
        history = list(prev["resolved"].get("resume_changes", [])) if prev else []
        if self._resume_changes:
            history.append({"step": self.global_step, **{k: list(v) for k, v in self._resume_changes.items()}})
        if history:
            resolved["resume_changes"] = history
        own = getattr(self.task, "config_doc", None)
        doc = {**own(), "resolved": resolved} if callable(own) else {"recipe": self.recipe, **self.cfg.to_dict(),
                                                                     "resolved": resolved}
        (self.out / "config.json").write_text(json.dumps(doc, indent=2) + "\n")

    # ------------------------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)


def _random_subset(ds: Dataset, n: int, seed: int) -> Dataset:
    """``n`` items of ``ds`` drawn at random from ``seed`` alone (the same on every rank), kept in
    dataset order: few-example fine-tuning such as VTAB-1k's 1,000 training images."""
    from ..data import SubsetView

    if n > len(ds):
        raise ValueError(f"train_examples={n} but the training split has only {len(ds)} images")
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return SubsetView(ds, sorted(order.tolist()))


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision=fp16 needs a CUDA device (it relies on loss scaling); use bf16 or fp32 on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]


def _zero_stats() -> dict[str, Any]:
    return {"loss_sum": 0.0, "samples": 0, "seconds": 0.0, "skipped": 0}


@contextlib.contextmanager
def _disk_full_guard(path: Path):
    """A full disk while writing ``path``: one line naming ENOSPC and the folder (save_atomic has
    removed its partial file and left the previous checkpoint as it was)."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise TrainingError(f"no space left on the device (ENOSPC) while writing {path.name} in {path.parent}; "
                            f"{kept}. Free space there (or move the run folder to a larger disk), then continue "
                            f"with --resume.") from None


def load_run_config(out_dir: str | Path) -> tuple[TrainConfig, str]:
    """The config and recipe name saved in a run folder's config.json; when config.json is missing,
    empty or damaged, the copy in checkpoint-last.pt (with a warning naming both files)."""
    doc = read_run_config(out_dir)
    recipe = doc.pop("recipe", "")
    from .recipes import recipe_class

    return recipe_class(recipe).from_dict(doc), recipe


def read_run_config(out_dir: str | Path) -> dict[str, Any]:
    """A run folder's saved config fields and ``recipe`` (``resolved`` left out), from config.json or,
    when that is missing, empty or damaged, from checkpoint-last.pt (with a warning naming both)."""
    path, ck = Path(out_dir) / "config.json", Path(out_dir) / "checkpoint-last.pt"
    doc, problem = None, ""
    if not path.is_file():
        problem = "does not exist"
    else:
        text = path.read_text(errors="replace")
        try:
            doc = json.loads(text) if text.strip() else None
            problem = "is empty" if doc is None else ("" if isinstance(doc, dict) else "is damaged (not a JSON object)")
        except ValueError as e:
            problem = f"is damaged ({e})"
        if problem:
            doc = None
    if doc is None:
        if not ck.is_file():
            raise FileNotFoundError(f"{str(path)!r} {problem} and there is no {ck.name} beside it; --resume needs "
                                    f"the --out folder of an earlier run")
        try:
            state = load_checkpoint(ck)
        except Exception as e:  # noqa: BLE001  (any unreadable file: say which and why)
            raise ValueError(f"{path} {problem}, and {ck} could not be read to recover it ({type(e).__name__}: "
                             f"{str(e)[:200]}); restore config.json from a copy, or start a new run with another "
                             f"--out") from None
        if not isinstance(state.get("config"), dict):
            raise ValueError(f"{path} {problem}, and {ck} holds no config to recover it from; restore config.json "
                             f"from a copy, or start a new run with another --out")
        log.warning("%s %s; took the run's config from %s (config.json is written again as the run continues)",
                    path, problem, ck)
        doc = {"recipe": state.get("recipe", ""), **state["config"]}
    doc.pop("resolved", None)
    return doc


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, recipe: str = "", **kwargs: Any) -> RunResult:
    """Train ``cfg`` into ``out_dir`` (see :class:`Trainer` for ``kwargs``). With ``resume`` the run
    continues from ``out_dir/checkpoint-last.pt`` exactly where it stopped."""
    if resume and not (Path(out_dir) / "checkpoint-last.pt").is_file():
        raise FileNotFoundError(f"nothing to resume: {Path(out_dir) / 'checkpoint-last.pt'} does not exist")
    return Trainer(cfg, out_dir, resume=resume, recipe=recipe, **kwargs).fit()

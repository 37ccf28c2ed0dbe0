"""The training configuration: one typed dataclass, overridable field by field from text.

Recipes (:mod:`vitkit.train.recipes`) are subclasses that change the defaults. The command line
passes ``field=value`` pairs, which :func:`apply_overrides` converts with the field's type and
checks; :meth:`TrainConfig.validate` rejects values outside their range with a message naming the
field, the value and what would be valid.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import typing
from dataclasses import dataclass, fields
from typing import Any

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
PARALLEL = ("ddp", "fsdp")
AUGMENT_PRESETS = ("imagenet", "cifar", "digits", "resize")
# ViT's position embeddings (vitkit.layers.pos_embed.POS_EMBEDS, repeated here so that reading a config
# does not import torch; a test keeps the two equal) and its poolings
POS_EMBEDS = ("none", "learned_1d", "learned_2d", "sincos_2d", "relative", "rope_2d")
GLOBAL_POOLS = ("token", "avg")
# fields of older versions that saved configs may still hold: dropped (with a warning) on load
LEGACY_FIELDS = {"keep_freed_memory": "the CPU allocator setting now follows vitkit.fast_paths (on by default)"}

log = logging.getLogger("vitkit.train")


@dataclass
class TrainConfig:
    """Every knob of a training run. Zero/empty values mean "take it from the model or the data"."""

    # model
    model: str = "vit_micro_patch4_28"
    pretrained: str = ""          # "" (from scratch), "true" (the default tag) or a tag name
    weights: str = ""             # a weights file to start from (any format vitkit.load_weights reads)
    img_size: int = 0             # 0: the model's native size
    num_classes: int = 0          # 0: the number of classes in the data
    drop_path: float = 0.0        # stochastic depth at the last block, rising linearly (Swin §A2)
    dropout: float = 0.0
    zero_init_head: bool = False  # replace the head by a zero-initialised one (ViT §3.2 fine-tuning)
    grad_checkpointing: bool = False
    pos_embed: str = ""           # ViT: "" (the model's) or one of POS_EMBEDS (vitkit.layers.pos_embed)
    global_pool: str = ""         # ViT: "" (the model's) | token ([class] token) | avg (GAP, ViT App. D.3)
    # data
    data: str = "mnist"           # mnist | cifar10 | cifar100 | a folder | an archive
    data_root: str = ""           # where named sets live ("" → $VITKIT_DATA or ~/.cache/vitkit/data)
    data_download: bool = False   # let torchvision download CIFAR when it is not found
    val_fraction: float = 0.0     # >0: carve validation out of train (evenly within each class)
    eval_split: str = "val"       # the split scored each epoch: val (val/, else test/, or the carve-out) | test
    train_examples: int = 0       # >0: train on a seeded random subset of this many images (VTAB-1k: 1000)
    num_workers: int = 2
    augment: str = "imagenet"     # train preset: imagenet | cifar | digits | resize
    scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range (imagenet preset)
    hflip: float = 0.5
    randaugment: int = 0          # RandAugment magnitude (0 = off)
    randaugment_ops: int = 2
    random_erasing: float = 0.0
    mixup: float = 0.0            # Mixup α (0 = off)
    cutmix: float = 0.0           # CutMix α (0 = off)
    mixup_prob: float = 1.0
    label_smoothing: float = 0.0
    crop_pct: float = 0.0         # eval centre crop (0: the model's)
    interpolation: str = ""       # "" → the model's
    # optimisation
    epochs: int = 10
    max_steps: int = 0            # >0: stop after this many optimiser steps (the schedule's length)
    batch_size: int = 128         # global batch per optimiser step (all ranks × accumulation)
    accum_steps: int = 1          # micro-batches accumulated per optimiser step
    optimizer: str = "adamw"
    lr: float = 1e-3
    lr_base_batch: int = 0        # >0: lr is given per this many images and scaled linearly to batch_size
    momentum: float = 0.9         # SGD
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.05    # not applied to norms, biases, position embeddings, bias tables
    layer_decay: float = 1.0      # layer-wise LR decay (<1: earlier blocks learn slower; 1 = off)
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_steps: int = 0         # >0 overrides warmup_epochs
    warmup_lr: float = 0.0        # LR at step 0 of the warm-up
    min_lr: float = 0.0           # LR at the end of the decay
    clip_grad: float = 0.0        # max global gradient norm (0 = no clipping)
    ema_decay: float = 0.0        # exponential moving average of the weights (0 = off)
    # runtime
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"       # auto: bf16 autocast on CUDA GPUs that support it, fp32 elsewhere
    channels_last: bool = False
    compile: bool = False
    parallel: str = "ddp"         # under torchrun: ddp (weights replicated) | fsdp (weights, gradients, optimiser state sharded per block)
    eval_every: int = 1           # epochs between evaluations (the last epoch is always evaluated)
    checkpoint_every: int = 0     # >0: also write checkpoint-last.pt every this many steps
    progress: bool = True
    threads: int = 0              # >0: torch CPU threads (0 = torch's default)
    push_to_hub: str = ""         # ORG/NAME: at the end, rank 0 pushes checkpoint-best.pt as a timm-format repo
    logger: str = "none"          # none | tensorboard | wandb (comma-separated): trackers beside metrics.jsonl
    log_every: int = 50           # >0: a row of steps.jsonl every this many optimiser steps (0 = off)

    # ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        for k in sorted(LEGACY_FIELDS.keys() & d.keys()):
            log.warning("ignoring the saved config's %s field: %s", k, LEGACY_FIELDS[k])
        d = {k: v for k, v in d.items() if k not in LEGACY_FIELDS}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown} in the saved config")
        hints = typing.get_type_hints(cls)
        return cls(**{k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in d.items()})

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first field whose value cannot work."""
        def need(ok: bool, field: str, msg: str) -> None:
            if not ok:
                raise ValueError(f"{field}={getattr(self, field)!r}: {msg}")

        for f in fields(self):  # inf/nan pass every comparison below that they should fail
            value = getattr(self, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                need(not isinstance(v, float) or math.isfinite(v), f.name, "must be a finite number")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"choose one of {OPTIMIZERS}")
        need(self.schedule in SCHEDULES, "schedule", f"choose one of {SCHEDULES}")
        need(self.precision in PRECISIONS, "precision", f"choose one of {PRECISIONS}")
        need(self.device in DEVICES or self.device.startswith("cuda:"), "device", f"choose one of {DEVICES}")
        need(self.augment in AUGMENT_PRESETS, "augment", f"choose one of {AUGMENT_PRESETS}")
        need(self.parallel in PARALLEL, "parallel", f"choose one of {PARALLEL}")
        need(not (self.parallel == "fsdp" and self.precision == "fp16"), "precision",
             "fp16 loss scaling is not supported with parallel=fsdp; use precision=bf16")
        need(self.pos_embed in ("",) + POS_EMBEDS, "pos_embed", f"choose one of {POS_EMBEDS} (or '' for the model's)")
        need(self.global_pool in ("",) + GLOBAL_POOLS, "global_pool",
             f"choose one of {GLOBAL_POOLS} (or '' for the model's)")
        need(self.interpolation in ("", "bilinear", "bicubic", "nearest"), "interpolation",
             "choose bilinear, bicubic or nearest")
        need(all(t.strip() in ("none", "tensorboard", "wandb") for t in self.logger.split(",")), "logger",
             "choose none, tensorboard or wandb (comma-separated for several)")
        need(self.log_every >= 0, "log_every", "must be 0 (off) or a number of steps")
        need(self.epochs >= 1, "epochs", "must be at least 1")
        need(self.max_steps >= 0, "max_steps", "must be 0 (use epochs) or positive")
        need(self.batch_size >= 1, "batch_size", "must be at least 1")
        need(self.accum_steps >= 1, "accum_steps", "must be at least 1")
        need(self.batch_size % self.accum_steps == 0, "batch_size",
             f"must be divisible by accum_steps={self.accum_steps}")
        need(self.lr > 0, "lr", "must be positive, e.g. 1e-3")
        need(self.lr_base_batch >= 0, "lr_base_batch", "must be >= 0 (0 = lr is the run's learning rate)")
        run_lr = self.lr * self.batch_size / self.lr_base_batch if self.lr_base_batch else self.lr
        scaled = f" (lr × batch_size / lr_base_batch = {run_lr:.3g})" if self.lr_base_batch else ""
        need(0 <= self.min_lr <= run_lr, "min_lr", f"the schedule decays from lr={run_lr:.3g}{scaled} to min_lr, so "
             "min_lr must be in [0, lr]; 0 or about lr/100 is usual")
        need(0 <= self.warmup_lr <= run_lr, "warmup_lr", f"the warm-up rises from warmup_lr to "
             f"lr={run_lr:.3g}{scaled}, so warmup_lr must be in [0, lr]; 0 or 1e-6 is usual")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(0 < self.layer_decay <= 1, "layer_decay", "must be in (0, 1]; 1 turns it off, 0.65-0.75 is usual")
        need(0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1); 0 turns EMA off, 0.9999 is the paper's")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        need(0 <= self.random_erasing <= 1, "random_erasing", "is a probability in [0, 1]")
        need(0 <= self.mixup_prob <= 1, "mixup_prob", "is a probability in [0, 1]")
        need(0 <= self.hflip <= 1, "hflip", "is a probability in [0, 1]")
        need(0 <= self.drop_path < 1, "drop_path", "must be in [0, 1)")
        need(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        need(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1), e.g. 0.1")
        need(self.eval_split in ("val", "test"), "eval_split", "choose val or test")
        need(self.train_examples >= 0, "train_examples", "must be >= 0 (0 = the whole training split)")
        need(0 <= self.crop_pct <= 1, "crop_pct", "must be in (0, 1], or 0 for the model's")
        need(0 < self.scale[0] <= self.scale[1] <= 1, "scale", "must be (min, max) with 0 < min <= max <= 1")
        need(self.clip_grad >= 0, "clip_grad", "must be >= 0 (0 = no clipping)")
        need(self.warmup_epochs >= 0 and self.warmup_steps >= 0, "warmup_epochs", "warm-up must be >= 0")
        need(self.num_workers >= 0, "num_workers", "must be >= 0")
        need(self.threads >= 0, "threads", "must be >= 0 (0 = torch's default)")
        need(self.randaugment >= 0, "randaugment", "is a magnitude >= 0 (0 = off, 9 is usual)")
        need(self.eval_every >= 1, "eval_every", "must be at least 1")
        need(self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0 (0 = end of each epoch only)")
        need(self.mixup >= 0 and self.cutmix >= 0, "mixup", "Mixup and CutMix α must be >= 0")
        need(self.img_size >= 0, "img_size", "must be >= 0 (0 = the model's)")
        need(self.num_classes >= 0, "num_classes", "must be >= 0 (0 = the number of classes in the data)")
        need(not self.push_to_hub or self.push_to_hub.count("/") == 1, "push_to_hub", "must be a Hub repo ORG/NAME")
        return self


def check_num_classes(requested: int, classes: list[str], model_classes: int | None = None) -> None:
    """Refuse, before anything is trained, a classifier whose number of outputs is not the data's
    number of classes (``requested``: ``num_classes``, 0 = the data's; ``model_classes``: a given
    model's ``num_classes``); say so when the data has a single class."""
    k = len(classes)
    if not k:
        return
    names = ", ".join(map(str, classes[:5])) + (", …" if k > 5 else "")
    if requested and requested != k:
        why = (f"labels {requested}..{k - 1} would not fit the classifier" if requested < k else
               f"outputs {k}..{requested - 1} would never be trained")
        raise ValueError(f"num_classes={requested} but the data has {k} classes ({names}): {why}. Set "
                         f"num_classes=0 to take it from the data (or num_classes={k}), or train on data with "
                         f"{requested} class folders")
    if model_classes is not None and model_classes != k:
        what = "has no classifier head (num_classes=0)" if model_classes <= 0 else f"has {model_classes} outputs"
        raise ValueError(f"the model {what} but the data has {k} classes ({names}); build it with num_classes={k}")
    if k == 1:
        log.warning("the data has only one class (%s): every prediction is that class, so accuracy is 100%% and "
                    "the loss 0 whatever the model learns. Put each class in its own sub-folder "
                    "(ROOT/<class>/<images>); a single folder of images is one class", classes[0])


def _convert(text: str, tp: Any, name: str) -> Any:
    """Text → value of type ``tp`` (int, float, bool, str, tuple[float, ...])."""
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}={text!r}: expected a boolean (true/false)")
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
        if len(parts) != len(args):
            raise ValueError(f"{name}={text!r}: expected {len(args)} comma-separated numbers, e.g. "
                             f"{name}={','.join(['0.9'] * len(args))}")
        return tuple(_convert(p, a, name) for p, a in zip(parts, args))
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            kind = "an integer" if tp is int else "a number"
            raise ValueError(f"{name}={text!r}: expected {kind}") from None
    return text


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any] | list[str]) -> TrainConfig:
    """Return a copy of ``cfg`` with ``overrides`` applied: ``["lr=3e-4", "betas=0.9,0.95"]`` or a dict
    (values already typed or text). Unknown fields name the closest valid ones."""
    items: dict[str, Any] = {}
    if isinstance(overrides, dict):
        items = dict(overrides)
    else:
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not of the form field=value (e.g. lr=3e-4)")
            k, v = item.split("=", 1)
            items[k.strip()] = v
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in fields(cfg)]
    values = {}
    for k, v in items.items():
        if k not in hints or k not in names:
            close = difflib.get_close_matches(k, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid fields: {', '.join(names)}"
            raise ValueError(f"unknown config field {k!r}{hint}")
        values[k] = _convert(v, hints[k], k) if isinstance(v, str) else v
    return dataclasses.replace(cfg, **values).validate()

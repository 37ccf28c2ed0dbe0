"""What the loop optimises and measures. The loop needs a task's three methods and ``main_metric``;
a task may also bring its own data, model, schedule and checkpoint metadata (the optional members of
:class:`Task`), which is how segmentation and detection (:mod:`vitkit.dense.train_seg`,
:mod:`vitkit.dense.train_det`) run on the same :class:`vitkit.train.Trainer` as classification."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import MixupCutmix


class Task(Protocol):
    """Required: ``main_metric``, :meth:`to_device`, :meth:`training_loss`, :meth:`evaluate`.

    Optional (the Trainer looks them up and falls back to classification's behaviour):

    - ``name``: the checkpoint's ``task`` entry (default ``"classification"``).
    - ``build(dist, *, model, train_set, val_set) -> (train_set, val_set, model)``: the task's own
      data (transforms set from the model's preprocessing record) and model, each unless given; its
      ``num_classes`` / ``class_names`` attributes are read afterwards.
    - ``collate``: the training (and default validation) loader's collate function.
    - ``val_loader(val_set, shard) -> loader``: what :meth:`evaluate` is given (``shard``: this
      process's indices, every item exactly once over the processes).
    - ``lr_lambda(total_steps, steps_per_epoch) -> f(step)``: the LR factor per optimiser step,
      instead of the config's warm-up + decay.
    - ``eval_interval``: >0: evaluate, write a metrics row (with ``iter``) and the checkpoints every
      this many steps and after the last (iteration-based recipes) instead of per epoch.
    - ``sync_bn``: synchronise batch norms across processes (GPU DDP).
    - ``checkpoint_meta() -> dict``: extra checkpoint entries (e.g. class names, palette, ``config``:
      the task's own recipe).
    - ``config_doc() -> dict``: what config.json holds instead of the TrainConfig.
    - ``describe(trainer) -> str``: the run's first log line; ``curve_keys``: the metrics curves.png
      draws; ``data_name``: the data named in its title.
    """

    main_metric: str  # the key of evaluate()'s result that decides checkpoint-best.pt (higher is better)

    def to_device(self, batch: Any, device: torch.device, channels_last: bool = False) -> Any: ...

    def training_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """(mean loss over the batch, number of samples) for one micro-batch already on the device."""

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device,
                 autocast: Callable[[], Any], channels_last: bool = False) -> dict[str, float]:
        """Metrics over the whole validation split, reduced over ranks; keys start with ``val_``."""


class ClassificationTask:
    """Cross-entropy on logits, optionally with Mixup/CutMix (soft targets) and label smoothing;
    validation reports ``val_loss``, ``val_acc1`` and ``val_acc5`` (fractions)."""

    main_metric = "val_acc1"
    name = "classification"

    def __init__(self, num_classes: int, *, label_smoothing: float = 0.0, mixup: MixupCutmix | None = None,
                 class_names: Sequence[str] | None = None) -> None:
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.mixup = mixup
        self.class_names = list(class_names) if class_names is not None else None

    def to_device(self, batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
        x = batch["image"].to(device, non_blocking=True)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return {**batch, "image": x, "target": batch["target"].to(device, non_blocking=True)}

    def training_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        x, y = batch["image"], batch["target"]
        if self.mixup is not None:
            x, y = self.mixup(x, y)  # y: (B, K) soft targets
        logits = model(x)
        return F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing), len(x)

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device,
                 autocast: Callable[[], Any] = contextlib.nullcontext, channels_last: bool = False) -> dict[str, float]:
        from ..evaluate.classification import evaluate

        r = evaluate(model, loader, device=device, num_classes=self.num_classes, class_names=self.class_names,
                     autocast=autocast, channels_last=channels_last)
        return {"val_loss": r.loss, "val_acc1": r.acc1, "val_acc5": r.acc5, "val_skipped": r.skipped}

"""Run logging beside ``metrics.jsonl``: a per-step file and optional experiment trackers.

- ``steps.jsonl`` (training field ``log_every=N``, default 50; 0 turns it off): every N optimiser
  steps one JSON row — step, epoch, mean training loss over those steps, learning rate, gradient
  norm, images per second.
- ``logger=tensorboard``: TensorBoard event files in ``RUN/tensorboard/`` (the same per-step
  scalars under ``train/``, and every metrics row's numbers under ``epoch/``), read by
  ``tensorboard --logdir runs/``. Needs ``pip install 'vitkit[tensorboard]'``.
- ``logger=wandb``: the same scalars to Weights & Biases (``pip install 'vitkit[wandb]'``; its own
  login and ``WANDB_MODE``), the run's config as the W&B config.
- ``logger=none`` (default): only the files.

The Trainer calls :func:`on_step` after every optimiser step and :func:`on_row` after every
metrics row, on every rank; only the main rank writes. The loggers are made on the first call
(so a resumed run finds its step, trims ``steps.jsonl`` to it and lets TensorBoard purge later
events) and flushed at every row, so a run that stops keeps what it logged.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

LOGGERS = ("none", "tensorboard", "wandb")
_ATTR = "_vitkit_run_loggers"


def parse_loggers(text: str) -> list[str]:
    """``"tensorboard"``, ``"tensorboard,wandb"`` or ``"none"`` → the list of trackers (checked)."""
    names = [t.strip() for t in str(text or "none").split(",") if t.strip()]
    bad = [n for n in names if n not in LOGGERS]
    if bad:
        raise ValueError(f"logger={text!r}: unknown {', '.join(bad)}; choose from {', '.join(LOGGERS)} "
                         "(comma-separated for several)")
    return [n for n in names if n != "none"]


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


class RunLoggers:
    """The loggers of one run (made by :func:`loggers_for`)."""

    def __init__(self, trainer: Any) -> None:
        cfg, out = trainer.cfg, Path(trainer.out)
        self.every = int(getattr(cfg, "log_every", 0) or 0)
        self.prev = (0.0, 0)
        self.t_last, self.step_last = time.time(), trainer.global_step
        self.steps_path = out / "steps.jsonl"
        if self.every and trainer.global_step:  # resumed: drop the steps the checkpoint had not reached
            self._trim(trainer.global_step)
        elif self.every:
            self.steps_path.write_text("")
        self.tb = self.wandb = None
        names = parse_loggers(getattr(cfg, "logger", "none"))
        if "tensorboard" in names:
            from ..extras import require

            require("tensorboard", "logger=tensorboard")
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=trainer.global_step or None)
        if "wandb" in names:
            from ..extras import require

            wandb = require("wandb", "logger=wandb")
            self.wandb = wandb.init(dir=str(out), name=out.name, config=cfg.to_dict(), resume="allow")

    def _trim(self, step: int) -> None:
        if not self.steps_path.is_file():
            return
        keep = [ln for ln in self.steps_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        self.steps_path.write_text("".join(ln + "\n" for ln in keep))

    def step(self, trainer: Any) -> None:
        s, step = trainer.epoch_stats, trainer.global_step
        if s["samples"] < self.prev[1]:  # a metrics row was written since: its sums restarted
            self.prev = (0.0, 0)
        if not self.every or (step % self.every and step < trainer.total_steps):
            return
        now = time.time()
        n = s["samples"] - self.prev[1]
        row = {"step": step, "epoch": round(step / trainer.steps_per_epoch, 4),
               "train_loss": (s["loss_sum"] - self.prev[0]) / n if n > 0 else None, "lr": trainer._lr(),
               "grad_norm": _number(getattr(trainer, "grad_norm", None)),
               "images_per_second": (step - self.step_last) * trainer.cfg.batch_size / max(now - self.t_last, 1e-9)}
        self.prev, self.t_last, self.step_last = (s["loss_sum"], s["samples"]), now, step
        with open(self.steps_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        scalars = {f"train/{k}": v for k, v in row.items() if k not in ("step", "epoch") and _number(v) is not None}
        self._scalars(scalars, step)

    def row(self, trainer: Any, row: dict[str, Any]) -> None:
        skip = ("epoch", "step", "iter")
        self._scalars({f"epoch/{k}": v for k, v in row.items() if k not in skip and _number(v) is not None},
                      trainer.global_step)
        if self.tb is not None:
            self.tb.flush()

    def _scalars(self, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for tag, v in values.items():
                self.tb.add_scalar(tag, float(v), step)
        if self.wandb is not None and values:
            self.wandb.log(values, step=step)


def loggers_for(trainer: Any) -> RunLoggers | None:
    """The trainer's loggers (made on first use), or None on a rank other than the main one."""
    if not trainer.dist.is_main:
        return None
    found = getattr(trainer, _ATTR, None)
    if found is None:
        found = RunLoggers(trainer)
        setattr(trainer, _ATTR, found)
    return found


def on_step(trainer: Any) -> None:
    """After every optimiser step (the Trainer's hook)."""
    logs = loggers_for(trainer)
    if logs is not None:
        logs.step(trainer)


def on_row(trainer: Any, row: dict[str, Any]) -> None:
    """After every metrics row (the Trainer's hook)."""
    logs = loggers_for(trainer)
    if logs is not None:
        logs.row(trainer, row)

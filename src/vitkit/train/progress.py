"""Console progress (a tqdm bar with throughput and ETA), summary lines and the run's curves.png.

Library code reports through :mod:`logging` and these helpers only; nothing here prints directly.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

log = logging.getLogger("vitkit.train")


class ProgressBar:
    """One bar per epoch counting images, so tqdm shows img/s and the epoch's ETA. When stderr is not
    a terminal (a log file, a batch job) it logs a plain line at most every ``log_every`` seconds
    instead; nothing at all when disabled (ranks other than 0, ``progress=false``)."""

    def __init__(self, total_images: int, desc: str, enabled: bool = True, initial: int = 0,
                 log_every: float = 60.0) -> None:
        self.total, self.done, self.desc, self.log_every = total_images, initial, desc, log_every
        self.start = self.last_log = time.time()
        self.initial = initial
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.bar = tqdm(total=total_images, initial=initial, desc=desc, unit="img", unit_scale=True,
                        dynamic_ncols=True, leave=False, file=sys.stderr, smoothing=0.1) if self.tty else None

    def update(self, images: int, **postfix: Any) -> None:
        self.done += images
        text = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()}
        if self.bar is not None:
            if text:
                self.bar.set_postfix(text, refresh=False)
            self.bar.update(images)
        elif self.enabled and time.time() - self.last_log >= self.log_every:
            self.last_log = now = time.time()
            rate = (self.done - self.initial) / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            log.info("%s: %d/%d images, %.0f img/s, ETA %s%s", self.desc, self.done, self.total, rate,
                     format_duration(eta), "".join(f", {k} {v}" for k, v in text.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def epoch_summary(row: dict[str, Any], epochs: int, eta: float | None = None) -> str:
    """``epoch 3/10 step 750 | train_loss 0.412 | val_loss 0.301 val_acc1 91.20% … | 28.3s``."""
    where = (f"epoch {row['epoch']}/{epochs}" if isinstance(row["epoch"], int) else f"epoch {row['epoch']:.2f}")
    parts = [f"{where} step {row['step']}", f"train_loss {row['train_loss']:.4f}"]
    val = [f"{k} {v * 100:.2f}%" if "acc" in k.lower() else f"{k} {v:.4f}"
           for k, v in row.items() if (k.startswith("val_") or k.startswith("ema_val_")) and isinstance(v, (int, float))
           and not isinstance(v, bool) and not k.endswith("skipped")]  # counts: reported on their own
    if val:
        parts.append(" ".join(val))
    parts.append(f"lr {row['lr']:.3g}")
    tail = f"{row['seconds']:.1f}s"
    if row.get("images_per_second"):
        tail += f" ({row['images_per_second']:.0f} img/s)"
    if eta is not None:
        tail += f", ETA {format_duration(eta)}"
    parts.append(tail)
    return " | ".join(parts)


ACCURACY_KEYS = ("val_acc1", "val_acc5", "ema_val_acc1")


def plot_curves(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "", *, x: str = "epoch",
                metric_keys: Sequence[str] = ACCURACY_KEYS) -> None:
    """Loss (train, val) and the validation metrics (``metric_keys``: top-1, top-5, EMA top-1 for
    classification; mIoU, box AP… for dense tasks; fractions, drawn as %) against ``x`` (``epoch``,
    or ``step`` for iteration-based runs that evaluate every so many steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r[x] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    if any(r.get("val_loss") is not None for r in rows):
        pts = [(r[x], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
        ax_loss.plot(*zip(*pts), "s-", label="val")
    ax_loss.set(xlabel=x, ylabel="loss", title="loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    styles = ("o-", "s--", "^-", "d-.", "v-", "x--")
    for key, style in zip(metric_keys, styles * (len(metric_keys) // len(styles) + 1)):
        pts = [(r[x], 100 * r[key]) for r in rows if isinstance(r.get(key), (int, float)) and r[key] == r[key]]
        if pts:
            label = key.replace("val_", "").replace("acc", "top-") if key in ACCURACY_KEYS else key
            ax_acc.plot(*zip(*pts), style, label=label)
    accuracy = tuple(metric_keys) == ACCURACY_KEYS
    ax_acc.set(xlabel=x, ylabel="accuracy (%)" if accuracy else "score (%)",
               title="validation accuracy" if accuracy else "evaluation")
    if ax_acc.lines:
        ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


class StepLog:
    """A :class:`~vitkit.train.Trainer` callback for iteration-based runs: every ``every`` optimiser
    steps (and after the last) one line on rank 0 — step, mean training loss over those steps, LR,
    images per second and the ETA."""

    def __init__(self, every: int, unit: str = "iter") -> None:
        self.every, self.unit = max(int(every), 1), unit
        self.prev = (0.0, 0)
        self.t_last: float | None = None
        self.step_last = 0

    def __call__(self, trainer: Any) -> None:
        s, step = trainer.epoch_stats, trainer.global_step
        if s["samples"] < self.prev[1]:  # a metrics row was written since: its sums restarted
            self.prev = (0.0, 0)
        now = time.time()
        if self.t_last is None:
            self.t_last, self.step_last = getattr(trainer, "_t_start", now), getattr(trainer, "_first_step", 0)
        if step % self.every and step < trainer.total_steps:
            return
        loss = (s["loss_sum"] - self.prev[0]) / max(s["samples"] - self.prev[1], 1)
        rate = (step - self.step_last) * trainer.cfg.batch_size / max(now - self.t_last, 1e-9)
        eta = trainer._seconds_per_step() * (trainer.total_steps - step)
        self.prev, self.t_last, self.step_last = (s["loss_sum"], s["samples"]), now, step
        if trainer.dist.is_main:
            log.info("%s %d/%d  loss %.4f  lr %.2e  %.1f img/s  eta %s", self.unit, step, trainer.total_steps, loss,
                     trainer._lr(), rate, format_duration(eta))

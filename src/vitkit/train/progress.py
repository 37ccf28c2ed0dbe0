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
    parts = [f"epoch {row['epoch']}/{epochs} step {row['step']}", f"train_loss {row['train_loss']:.4f}"]
    val = [f"{k} {v * 100:.2f}%" if "acc" in k else f"{k} {v:.4f}"
           for k, v in row.items() if (k.startswith("val_") or k.startswith("ema_val_")) and v is not None]
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


def plot_curves(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Loss (train, val) and accuracy (top-1, top-5, EMA top-1 when present) against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    if any(r.get("val_loss") is not None for r in rows):
        pts = [(r["epoch"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
        ax_loss.plot(*zip(*pts), "s-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    for key, style in (("val_acc1", "o-"), ("val_acc5", "s--"), ("ema_val_acc1", "^-")):
        pts = [(r["epoch"], 100 * r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax_acc.plot(*zip(*pts), style, label=key.replace("val_", "").replace("acc", "top-"))
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy")
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

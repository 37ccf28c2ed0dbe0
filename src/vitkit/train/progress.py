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


def plural(n: int | float, word: str) -> str:
    """``1 epoch``, ``2 epochs``, ``1 rank``, ``2 processes``."""
    if float(n) == 1:
        return f"{n:g} {word}"
    return f"{n:g} {word}es" if word.endswith(("s", "x", "sh")) else f"{n:g} {word}s"  # epochs, processes


def model_with_overrides(name: str, kwargs: dict[str, Any] | None) -> str:
    """``swin_tiny_patch4_window7_224 (embed_dim=48, depths=(2, 2, 2, 2))``: a registry name whose
    row a recipe changed is not that row's model, and the header should say so."""
    return f"{name} ({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else name


def format_metric(key: str, value: float | None) -> str:
    """``val_acc1 97.65%`` (accuracies in %, as the epoch lines show them), else ``key 0.1234``."""
    if value is None:
        return f"{key} -"
    return f"{key} {value * 100:.2f}%" if "acc" in key.lower() else f"{key} {value:.4f}"


def epoch_summary(row: dict[str, Any], epochs: int, eta: float | None = None) -> str:
    """``epoch 3/10 step 750 | train_loss 0.412 | val_loss 0.301 val_acc1 91.20% … | 28.3s``."""
    where = (f"epoch {row['epoch']}/{epochs}" if isinstance(row["epoch"], int) else f"epoch {row['epoch']:.2f}")
    parts = [f"{where} step {row['step']}", f"train_loss {row['train_loss']:.4f}"]
    val = [format_metric(k, v)
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


def _read_steps(path: Path) -> list[dict[str, Any]]:
    import json

    try:
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, ValueError):
        return []


def plot_curves(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "", *, x: str = "epoch",
                metric_keys: Sequence[str] = ACCURACY_KEYS, steps: Sequence[dict[str, Any]] | None = None) -> None:
    """Three panels against ``x`` (``epoch``, or ``step`` for iteration-based runs that evaluate
    every so many steps): loss (train, val), the validation metrics (``metric_keys``: top-1, top-5,
    EMA top-1 for classification; mIoU, box AP… for dense tasks; fractions, drawn as %) and the
    learning rate. Every row is a marked point (a one-epoch run shows its one row, not an invisible
    line); the best row of the first metric is starred and marked on every panel. ``steps`` (default:
    the ``steps.jsonl`` beside ``path``, when there is one) adds the per-step training loss and
    learning rate, so that even a short run has curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    if steps is None:
        steps = _read_steps(path.with_name("steps.jsonl"))
    steps = [r for r in steps if r.get(x) is not None]
    ep = [r[x] for r in rows]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True, sharex=True)
    if steps:
        pts = [(r[x], r["train_loss"]) for r in steps if r.get("train_loss") is not None]
        if pts:
            ax_loss.plot(*zip(*pts), "-", color="tab:blue", alpha=0.35, lw=1, label="train (per step)")
    ax_loss.plot(ep, [r["train_loss"] for r in rows], "o-", color="tab:blue", label="train")
    if any(r.get("val_loss") is not None for r in rows):
        pts = [(r[x], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
        ax_loss.plot(*zip(*pts), "s-", color="tab:orange", label="val")
    ax_loss.set(xlabel=x, ylabel="loss", title="loss")
    styles = ("o-", "s--", "^-", "d-.", "v-", "x--")
    best = None
    for key, style in zip(metric_keys, styles * (len(metric_keys) // len(styles) + 1)):
        pts = [(r[x], 100 * r[key]) for r in rows if isinstance(r.get(key), (int, float)) and r[key] == r[key]]
        if pts:
            label = key.replace("val_", "").replace("acc", "top-") if key in ACCURACY_KEYS else key
            ax_acc.plot(*zip(*pts), style, label=label)
            if best is None:
                best = (key, label, *max(pts, key=lambda p: p[1]))
    accuracy = tuple(metric_keys) == ACCURACY_KEYS
    ax_acc.set(xlabel=x, ylabel="accuracy (%)" if accuracy else "score (%)",
               title="validation accuracy" if accuracy else "evaluation")
    if ax_acc.lines:
        ax_acc.set_ylim(top=min(ax_acc.get_ylim()[1], 101.0))  # no room above 100% to draw
    if best is not None:
        _, label, bx, by = best
        ax_acc.plot([bx], [by], "*", color="gold", markeredgecolor="black", markersize=16, zorder=5,
                    label=f"best {label} {by:.2f}% ({x} {bx:g})")
        for ax in (ax_loss, ax_acc, ax_lr):
            ax.axvline(bx, color="grey", ls=":", lw=1)
    lr_pts = [(r[x], r["lr"]) for r in (steps or rows) if r.get("lr") is not None]
    if lr_pts:
        ax_lr.plot(*zip(*lr_pts), "-" if steps else "o-", color="tab:green")
    ax_lr.set(xlabel=x, ylabel="learning rate", title="learning rate" + (" (per step)" if steps else ""))
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.grid(alpha=0.3)
    if not steps and all(float(v).is_integer() for v in ep):
        ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))  # shared by the three panels
    for ax in (ax_loss, ax_acc):
        if ax.lines:
            ax.legend(fontsize=8)
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

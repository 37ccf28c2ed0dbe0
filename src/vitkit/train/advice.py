"""What ``vitkit train`` decides for a user who did not say, and what it warns about before a run.

- :func:`choose_recipe`: the recipe for ``--data`` when no ``--recipe`` is given. The MNIST demo's
  digit augmentation (small shifts, no flips) suits only MNIST-like data; small colour images get
  the CIFAR CPU recipe, anything else the general ``folder_vit_cpu`` recipe.
- :func:`schedule_warnings`: a warm-up as long as the whole run (``--epochs 1`` with a one-epoch
  warm-up: the learning rate only rises, the cosine decay never starts).
- :func:`eval_split_warning`: ``checkpoint-best.pt`` chosen on ``test/`` because there is no
  ``val/`` (the best epoch's test accuracy is then an optimistic estimate).
- :func:`cpu_budget`: torch threads and data workers from the cores that are free now
  (``os.sched_getaffinity`` minus the 1-minute load average): on a shared 2-core machine, two
  threads plus a worker beside another job ran 5× slower than one thread (70 vs 353 img/s).

Nothing heavy is imported at the top level; the data is looked at through its files (PIL).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DIGITS_RECIPE, SMALL_RGB_RECIPE, GENERAL_RECIPE = "mnist_demo", "cifar10_vit_cpu", "folder_vit_cpu"


def _first_image(root: Path) -> Path | None:
    from ..data.images import IMAGE_EXTENSIONS

    for base in (root / "train", root):
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    return path
    return None


def choose_recipe(data: str, data_root: str | None = None) -> tuple[str, str]:
    """(recipe name, why) for ``--data`` without ``--recipe``."""
    from ..data import resolve_data

    name = str(data)
    if name == "mnist":
        return DIGITS_RECIPE, "the embedded MNIST sample"
    if name in ("cifar10", "cifar100"):
        return SMALL_RGB_RECIPE, f"{name}: 32×32 colour images"
    src = resolve_data(name, data_root=data_root)
    if src.kind == "cifar":
        return SMALL_RGB_RECIPE, "a CIFAR folder: 32×32 colour images"
    first = _first_image(src.root) if src.root is not None else None
    if first is None:
        return GENERAL_RECIPE, "no image found to look at"
    from PIL import Image

    with Image.open(first) as im:
        mode, (w, h) = im.mode, im.size
    grey = mode in ("1", "L", "LA", "I", "I;16", "F")
    what = f"{'grey' if grey else 'colour'} {w}×{h} images (first: {first.name})"
    if grey and max(w, h) <= 32:
        return DIGITS_RECIPE, f"{what}: MNIST-like"
    if not grey and max(w, h) <= 32:
        return SMALL_RGB_RECIPE, f"{what}: CIFAR-like"
    return GENERAL_RECIPE, what


def _plural(n: float, word: str) -> str:
    n_text = f"{n:g}"
    return f"{n_text} {word}" if n_text == "1" else f"{n_text} {word}s"


def train_images(cfg: Any) -> int | None:
    """How many training images ``cfg`` will use (the files are listed, none decoded); None when
    the data cannot be opened here (the run itself then says why)."""
    from ..data import build_dataset, resolve_data

    try:
        n = len(build_dataset(resolve_data(cfg.data, data_root=cfg.data_root or None), "train", None,
                              val_fraction=cfg.val_fraction))
    except (FileNotFoundError, ValueError, OSError):
        return None
    return min(n, cfg.train_examples) if cfg.train_examples else n


def schedule_warnings(cfg: Any) -> list[str]:
    """Schedules that cannot do what the recipe meant (the warm-up covering the whole run)."""
    out = []
    warmup_steps = cfg.warmup_steps
    if cfg.max_steps and not warmup_steps and cfg.warmup_epochs:
        n = train_images(cfg)  # warmup_epochs in steps needs the epoch's length
        if n:
            warmup_steps = int(cfg.warmup_epochs * max(n // cfg.batch_size, 1))
    if cfg.max_steps and warmup_steps and warmup_steps >= cfg.max_steps:
        given = f"{cfg.warmup_steps} steps" if cfg.warmup_steps else \
            f"{_plural(cfg.warmup_epochs, 'epoch')}, {warmup_steps} steps"
        out.append(f"the warm-up ({given}) is as long as the whole run (max_steps={cfg.max_steps}): "
                   "the learning rate only rises and never decays; lower warmup_steps or warmup_epochs")
    elif not cfg.max_steps and not cfg.warmup_steps and cfg.warmup_epochs and cfg.warmup_epochs >= cfg.epochs:
        out.append(f"the warm-up ({_plural(cfg.warmup_epochs, 'epoch')}) is as long as the whole run "
                   f"({_plural(cfg.epochs, 'epoch')}): the learning rate only rises and never decays; train longer "
                   f"or set warmup_epochs={cfg.epochs / 5:g}")
    return out


def eval_split_warning(cfg: Any) -> str | None:
    """A note when the per-epoch evaluation, and with it checkpoint-best.pt, uses test/ (no val/)."""
    from ..data import resolve_data

    if cfg.eval_split != "val" or cfg.val_fraction > 0:
        return None
    try:
        src = resolve_data(cfg.data, data_root=cfg.data_root or None)
    except (FileNotFoundError, ValueError):
        return None  # the run itself reports missing data
    if src.kind == "split-folder" and not (src.root / "val").is_dir() and (src.root / "test").is_dir():
        where = f"{src.root}/test/"
    elif src.kind == "cifar":
        where = "CIFAR's test batches"
    else:
        return None
    return (f"no val/ split: each epoch is evaluated on {where}, and checkpoint-best.pt is chosen on it, so its "
            "accuracy is an optimistic estimate of the test accuracy; set val_fraction=0.1 to hold out a tenth "
            "of train/ for the choice instead")


def free_cores() -> tuple[int, int, float]:
    """(cores this process may use, of them free now, the 1-minute load average)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return cores, max(1, min(cores, round(cores - load))), load


def cpu_budget(cfg: Any, workers_given: bool) -> tuple[int, int, str] | None:
    """(threads, num_workers, why) for a CPU run whose ``threads`` is 0 (auto); None when the
    user chose threads. Workers are kept unless they would leave no free core for the model
    (or ``workers_given``: the user's choice)."""
    if cfg.threads:
        return None
    cores, free, load = free_cores()
    workers = cfg.num_workers
    if not workers_given and workers and free <= workers:
        workers = max(0, free - 1)
    threads = max(1, free - workers)
    why = (f"{_plural(free, 'free core')} of {cores} (load average {load:.1f}): threads={threads}, "
           f"num_workers={workers}; set threads=N num_workers=N to choose")
    return threads, workers, why

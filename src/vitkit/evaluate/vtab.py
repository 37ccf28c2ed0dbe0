"""VTAB-1k style transfer (ViT paper Table 2 / Fig. 2; Zhai et al. 2019): fine-tune on 1,000
training images of each task with one fixed setting, score each task's test split, and average
per group (Natural, Specialized, Structured) and over all tasks.

    from vitkit.evaluate.vtab import run_vtab
    from vitkit.train import get_recipe
    summary = run_vtab("/data/vtab", "runs/vtab", get_recipe("vit_finetune"), pretrained="true")

``tasks_root`` holds one folder per task, each with ``train/<class>/…`` and ``test/<class>/…``
(images by class; how the tasks were exported is up to the user: tensorflow-datasets is not a
dependency). The ViT paper's setting for every task: SGD with momentum, batch 512, 2,500 steps,
lr 0.01, cosine decay, gradient clipping at 1, no weight decay, resolution 384 (``vit_finetune``
with ``max_steps=2500 lr=0.01``, what :func:`vtab_config` sets). The 1,000 images are a seeded
random subset of ``train/`` (VTAB-1k's ``train800val200`` pooled for the final run); the score is
top-1 on ``test/`` of the model after the last step, evaluated once.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("vitkit.evaluate")

# The 19 VTAB-1k tasks and their groups (Zhai et al. 2019), under common folder names.
VTAB_GROUPS: dict[str, str] = {
    **dict.fromkeys(("caltech101", "cifar100", "dtd", "flowers102", "pets", "sun397", "svhn"), "natural"),
    **dict.fromkeys(("patch_camelyon", "eurosat", "resisc45", "retinopathy"), "specialized"),
    **dict.fromkeys(("clevr_count", "clevr_dist", "dmlab", "kitti_dist", "dsprites_loc", "dsprites_ori",
                     "smallnorb_azi", "smallnorb_elev"), "structured"),
}


def vtab_config(cfg: Any, examples: int = 1000, steps: int = 2500, lr: float = 0.01) -> Any:
    """``cfg`` (a TrainConfig) set to the paper's VTAB protocol: ``examples`` training images,
    ``steps`` optimiser steps at ``lr``, scored on the test split once, after the last step (no
    epoch is chosen by its test score)."""
    return dataclasses.replace(cfg, train_examples=examples, max_steps=steps, lr=lr, eval_split="test",
                               val_fraction=0.0, eval_every=10**9)


def find_tasks(tasks_root: str | Path) -> list[Path]:
    """The task folders under ``tasks_root``: those with ``train/`` and ``test/`` inside, sorted."""
    root = Path(tasks_root)
    if not root.is_dir():
        raise FileNotFoundError(f"VTAB folder {str(root)!r} does not exist")
    tasks = sorted(p for p in root.iterdir() if (p / "train").is_dir() and (p / "test").is_dir())
    if not tasks:
        raise FileNotFoundError(f"no task folders under {str(root)!r}: each task needs train/<class>/ and "
                                "test/<class>/ image folders")
    return tasks


def summarize(scores: dict[str, float]) -> dict[str, Any]:
    """Per-group means (tasks named as in :data:`VTAB_GROUPS`; others under ``"other"``) and the
    mean over all tasks — the VTAB score when all 19 are there."""
    groups: dict[str, list[float]] = {}
    for task, acc in scores.items():
        groups.setdefault(VTAB_GROUPS.get(task.lower(), "other"), []).append(acc)
    return {"tasks": dict(scores), "groups": {g: sum(v) / len(v) for g, v in sorted(groups.items())},
            "mean": sum(scores.values()) / len(scores), "complete": set(VTAB_GROUPS) <= {t.lower() for t in scores}}


def run_vtab(tasks_root: str | Path, out_dir: str | Path, cfg: Any, *, tasks: list[str] | None = None,
             examples: int = 1000, steps: int = 2500, lr: float = 0.01, **overrides: Any) -> dict[str, Any]:
    """Fine-tune ``cfg`` (with ``overrides``) on every task under ``tasks_root`` per the VTAB-1k
    protocol (:func:`vtab_config`), one run folder each under ``out_dir``; writes ``vtab.json`` and
    ``vtab.md`` there and returns :func:`summarize`'s dict. A task whose run folder already holds a
    finished run is read back, not trained again (an interrupted sweep continues)."""
    from ..train import apply_overrides, train

    out = Path(out_dir)
    chosen = find_tasks(tasks_root)
    if tasks:
        missing = set(tasks) - {p.name for p in chosen}
        if missing:
            raise ValueError(f"tasks {sorted(missing)} are not under {tasks_root}")
        chosen = [p for p in chosen if p.name in tasks]
    base = vtab_config(apply_overrides(cfg, overrides) if overrides else cfg, examples, steps, lr)
    scores: dict[str, float] = {}
    for task in chosen:
        run_dir = out / task.name
        done = _final_top1(run_dir, base.max_steps)
        if done is None:
            log.info("VTAB task %s: %d images, %d steps", task.name, examples, steps)
            result = train(dataclasses.replace(base, data=str(task)), run_dir)
            done = result.metrics[-1]["val_acc1"]
        scores[task.name] = done
    summary = summarize(scores)
    if _is_main():  # under torchrun every process runs the sweep; one writes the summary
        out.mkdir(parents=True, exist_ok=True)
        (out / "vtab.json").write_text(json.dumps({**summary, "config": base.to_dict()}, indent=2) + "\n")
        (out / "vtab.md").write_text(table(summary))
    return summary


def _is_main() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _final_top1(run_dir: Path, steps: int) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    last = rows[-1] if rows else None
    return last["val_acc1"] if last and last.get("step") == steps and "val_acc1" in last else None


def table(summary: dict[str, Any]) -> str:
    """:func:`summarize`'s dict as a markdown table (top-1 in %)."""
    lines = ["| task | group | top-1 (test) |", "|---|---|---:|"]
    for task, acc in summary["tasks"].items():
        lines.append(f"| {task} | {VTAB_GROUPS.get(task.lower(), 'other')} | {100 * acc:.2f} |")
    for group, acc in summary["groups"].items():
        lines.append(f"| **{group} mean** | | {100 * acc:.2f} |")
    lines.append(f"| **mean over {len(summary['tasks'])} tasks** | | {100 * summary['mean']:.2f} |")
    return "\n".join(lines) + "\n"

"""Plumbing for the dense training loops: distributed setup, schedules, run-folder files
(config.json, metrics.jsonl, checkpoints written atomically, curves.png). The process group,
atomic checkpoint writes and optimiser groups are vitkit.train's, shared with classification."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from ..data.sampler import ShardedSampler
from ..layers.fastpath import fast_paths_enabled
from ..train.allocator import keep_freed_memory
from ..train.checkpoint import load_checkpoint, restore_rng, rng_states, save_atomic  # noqa: F401  (re-exported)
from ..train.distributed import DistInfo, Parallel, cleanup, init_distributed  # noqa: F401  (Parallel re-exported)
from ..train.distributed import unwrap_model as unwrap  # noqa: F401  (re-exported for the loops)
from ..train.loop import NonFiniteLossError
from ..train.optim import param_groups  # noqa: F401  (no decay on norms, biases, positions, bias tables)

log = logging.getLogger("vitkit.dense")


def setup(seed: int, threads: int = 0) -> DistInfo:
    """Join the torchrun process group when launched by torchrun (NCCL on GPU, gloo on CPU; via
    :func:`vitkit.train.distributed.init_distributed`), seed every RNG, offset by rank so that
    augmentations differ across processes."""
    if threads:
        torch.set_num_threads(threads)
    d = init_distributed("auto")
    if d.device.type == "cpu" and fast_paths_enabled():
        keep_freed_memory()  # see vitkit.train.allocator: fewer page faults per training step
    random.seed(seed + d.rank)
    np.random.seed(seed + d.rank)
    torch.manual_seed(seed + d.rank)
    return d


def teardown() -> None:
    cleanup()


def per_rank_batch(global_batch: int, world: int) -> int:
    if global_batch % world:
        raise ValueError(f"batch_size={global_batch} does not split over {world} processes; "
                         f"use a multiple of {world}")
    return global_batch // world


class ShardSampler(Sampler[int]):
    """Evaluation shards without the padding DistributedSampler adds: rank r gets r, r + W, …,
    so metrics summed over ranks count every sample exactly once."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def train_sampler(size: int, d: DistInfo, seed: int, drop_last: bool) -> ShardedSampler:
    """This process's share of the training set, shuffled per epoch from ``(seed, epoch)``; items
    come as ``(index, seed)`` so that each crop's augmentation depends on its seed alone (the
    datasets run their transforms under it), and ``set_epoch(epoch, start)`` resumes mid-epoch."""
    return ShardedSampler(size, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=seed,
                          drop_last=drop_last)


def warmup_poly(total: int, warmup: int, ratio: float, power: float):
    """LR factor per iteration: linear warm-up from ``ratio`` to 1, then (1 − t/T)^power."""
    def f(it: int) -> float:
        base = (1 - min(it, total) / total) ** power
        if it < warmup:
            return base * (ratio + (1 - ratio) * it / warmup)
        return base
    return f


def warmup_steps(milestones: Sequence[int], gamma: float, warmup: int, ratio: float):
    """LR factor per iteration: linear warm-up, then ×gamma at each milestone (in iterations)."""
    def f(it: int) -> float:
        w = ratio + (1 - ratio) * it / warmup if it < warmup else 1.0
        return w * gamma ** sum(it >= m for m in milestones)
    return f


class RunFolder:
    """The run folder contract: config.json, metrics.jsonl, checkpoint-{last,best}.pt, curves.png.
    Only rank 0 writes."""

    def __init__(self, out: str | Path, main: bool) -> None:
        self.dir = Path(out)
        self.main = main
        if main:
            self.dir.mkdir(parents=True, exist_ok=True)

    def write_config(self, recipe: Any) -> None:
        if self.main:
            (self.dir / "config.json").write_text(json.dumps(dataclasses.asdict(recipe), indent=2) + "\n")

    def log_metrics(self, row: dict[str, Any]) -> None:
        if self.main:
            with open(self.dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.dir / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def save(self, name: str, state: dict[str, Any]) -> None:
        """Atomic: write a temporary file, then rename over the old one."""
        if self.main:
            save_atomic(state, self.dir / name)

    def plot(self, metric_keys: Sequence[str], train_losses: list[tuple[int, float]]) -> None:
        """curves.png: training loss by iteration and validation metrics by evaluation."""
        if not self.main:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read_metrics()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        if train_losses:
            its, losses = zip(*train_losses)
            axes[0].plot(its, losses, lw=1)
        axes[0].set(xlabel="iteration", ylabel="training loss", title="loss")
        for key in metric_keys:
            pts = [(r["iter"], r[key]) for r in rows if r.get(key) is not None and not math.isnan(r[key])]
            if pts:
                axes[1].plot(*zip(*pts), marker="o", label=key)
        axes[1].set(xlabel="iteration", ylabel="score (0–1)", title="evaluation")
        axes[1].legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(self.dir / "curves.png", dpi=90)
        plt.close(fig)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when asked; a no-op context on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def check_finite(loss: torch.Tensor, it: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss.item()} at iteration {it}; the last good checkpoint is kept. "
                                 "Lower lr, enable clip_grad=1.0, or check the labels")

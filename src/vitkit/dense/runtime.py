"""Plumbing for the dense training loops: distributed setup, schedules, run-folder files
(config.json, metrics.jsonl, checkpoints written atomically, curves.png). The process group,
atomic checkpoint writes and optimiser groups are vitkit.train's, shared with classification."""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from ..data.sampler import ShardedSampler
from ..train.checkpoint import get_rng_state, load_checkpoint, save_atomic, set_rng_state  # noqa: F401  (re-exported)
from ..train.allocator import keep_freed_memory
from ..train.distributed import DistInfo, cleanup, gather_objects, init_distributed, unwrap_model
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
    if d.device.type == "cpu":
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


def rng_states() -> list[dict[str, Any]]:
    """Every process's generator states (torch CPU and CUDA, NumPy, Python) in rank order, for a
    checkpoint: drop-path, proposal sampling and the like then draw on after a resume exactly as
    in the uninterrupted run. A collective under DDP: every rank calls it."""
    return gather_objects(get_rng_state())


def restore_rng(states: Any, d: DistInfo) -> None:
    """Put back the states :func:`rng_states` saved (this rank's)."""
    if not isinstance(states, list) or not states:
        if d.is_main:
            log.warning("the checkpoint predates saved generator states: data order and augmentation "
                        "continue exactly, other random draws (drop-path, sampling) do not")
        return
    if len(states) != d.world_size and d.is_main:
        log.warning("resuming %d processes from a %d-process checkpoint: data order is kept, random draws are not",
                    d.world_size, len(states))
    set_rng_state(states[d.rank % len(states)])


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


class Parallel:
    """How a dense training loop spreads over torchrun's processes: ``ddp`` (weights replicated) or
    ``fsdp`` (weights, gradients and optimiser state sharded per Transformer block; see
    :mod:`vitkit.train.fsdp`). One process: neither. The loop calls, in order: :meth:`shard` before
    building the optimiser, :meth:`load` on resume, :meth:`wrap`, and :meth:`whole` / :meth:`state`
    at each evaluation (collectives: every process calls them)."""

    def __init__(self, parallel: str, d: DistInfo, sync_bn: bool = False) -> None:
        if parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel={parallel!r}: choose ddp or fsdp")
        self.d, self.sync_bn = d, sync_bn and d.device.type == "cuda"
        self.fsdp = parallel == "fsdp" and d.world_size > 1
        self._whole: nn.Module | None = None

    def shard(self, model: nn.Module) -> nn.Module:
        if self.fsdp:
            from ..train.fsdp import shard_model

            if self.sync_bn:
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            with torch.no_grad():  # rank 0's initial weights everywhere, as DDP does (ranks seed apart)
                for t in [*model.parameters(), *model.buffers()]:
                    torch.distributed.broadcast(t, src=0)
            self._whole = copy.deepcopy(model).eval()  # whole, refreshed from the shards to evaluate
            shard_model(model)
        return model

    def load(self, model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any], path: Path) -> None:
        saved = state.get("parallel", "ddp")  # fsdp checkpoints key the optimiser state by parameter name
        if self.fsdp and saved != "fsdp":
            raise ValueError(f"{path} was written without FSDP (parallel={saved}); resume it with parallel={saved}")
        if saved == "fsdp":  # into the shards, or into a whole model (a resume on one process)
            from ..train.fsdp import load_full_state

            load_full_state(model, opt, state["model"], state["optimizer"])
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.d.world_size == 1 or self.fsdp:
            return model
        if self.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[self.d.local_rank] if self.d.device.type == "cuda" else None)

    def whole(self, model: nn.Module) -> nn.Module:
        """The model to evaluate: FSDP's whole copy loaded from the shards (so that processes with
        unequal shares of the images run no collectives), else the model itself."""
        if not self.fsdp:
            return model
        from ..train.fsdp import full_model_state

        self._whole.load_state_dict(full_model_state(model, everywhere=True))
        return self._whole

    def state(self, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
        """``model``, ``optimizer`` and ``parallel`` entries of a checkpoint (whole state dicts)."""
        if self.fsdp:
            from ..train.fsdp import full_model_state, full_optimizer_state

            return dict(model=full_model_state(model), optimizer=full_optimizer_state(model, opt), parallel="fsdp")
        return dict(model=unwrap(model).state_dict(), optimizer=opt.state_dict(), parallel="ddp")


def unwrap(model: nn.Module) -> nn.Module:
    return unwrap_model(model)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when asked; a no-op context on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def check_finite(loss: torch.Tensor, it: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss.item()} at iteration {it}; the last good checkpoint is kept. "
                                 "Lower lr, enable clip_grad=1.0, or check the labels")

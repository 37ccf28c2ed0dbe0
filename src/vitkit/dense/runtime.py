"""What the dense tasks share besides the :class:`~vitkit.train.Trainer` (which runs their training:
one run-folder writer, resume, interrupt handling and checkpoint format for every task): evaluation
shards, the iteration-based LR schedules of the dense recipes, bf16 autocast for evaluation, and
reading a recipe back from a checkpoint. The process group, atomic checkpoint writes and the
FSDP/DDP wrapper are vitkit.train's."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Sampler

from ..train.checkpoint import load_checkpoint  # noqa: F401  (re-exported)
from ..train.distributed import DistInfo, Parallel, cleanup  # noqa: F401  (Parallel re-exported)
from ..train.distributed import unwrap_model as unwrap  # noqa: F401  (re-exported for the tasks)

log = logging.getLogger("vitkit.dense")


def teardown() -> None:
    cleanup()


class ShardSampler(Sampler[int]):
    """Evaluation shards without the padding DistributedSampler adds: rank r gets r, r + W, …,
    so metrics summed over ranks count every sample exactly once."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


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


def recipe_from_dict(cls: type, state: dict[str, Any]) -> Any:
    """The recipe a dense checkpoint was trained with: ``config`` (the Trainer's checkpoints), or
    ``recipe`` as a dict (checkpoints of the earlier dense loops); unknown fields are dropped."""
    d = state["recipe"] if isinstance(state.get("recipe"), dict) else state["config"]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when asked; a no-op context on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")

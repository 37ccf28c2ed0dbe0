"""torchrun integration: process group, device, rank-aware reductions.

Launch the same command under ``torchrun --nproc_per_node=N`` (one machine) or with
``--nnodes=M --node_rank=R --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT`` on every machine: torchrun
sets RANK, LOCAL_RANK and WORLD_SIZE, and :func:`init_distributed` joins the group (NCCL on CUDA,
gloo on CPU).
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={pref!r} but no CUDA GPU is visible; use device=cpu")
        return torch.device(pref if ":" in pref else f"cuda:{local_rank}")
    return torch.device(pref)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (a no-op in a single process); returns ``t``."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """In-place maximum over ranks (a no-op in a single process); returns ``t``."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    if dist.is_available() and dist.is_initialized():
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside its wrappers: ``DistributedDataParallel`` / ``DataParallel`` (``.module``)
    and ``torch.compile`` (``._orig_mod``), in any nesting."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
            model = model._orig_mod
        else:
            return model


class Parallel:
    """How a training loop spreads over torchrun's processes: ``ddp`` (weights replicated) or
    ``fsdp`` (weights, gradients and optimiser state sharded per Transformer block; see
    :mod:`vitkit.train.fsdp`). One process: neither. The loop calls, in order: :meth:`shard` before
    building the optimiser, :meth:`load` on resume, :meth:`wrap`, and :meth:`whole` /
    :meth:`model_state` / :meth:`optimizer_state` to evaluate and checkpoint (collectives under
    FSDP: every process calls them)."""

    def __init__(self, parallel: str, d: DistInfo, sync_bn: bool = False) -> None:
        if parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel={parallel!r}: choose ddp or fsdp")
        self.d, self.sync_bn = d, sync_bn and d.device.type == "cuda"
        self.fsdp = parallel == "fsdp" and d.world_size > 1
        self.name = "fsdp" if self.fsdp else "ddp"  # what a checkpoint records
        self._whole: torch.nn.Module | None = None

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.fsdp:
            from .fsdp import shard_model

            if self.sync_bn:
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            with torch.no_grad():  # rank 0's initial weights everywhere, as DDP does (ranks may seed apart)
                for t in [*model.parameters(), *model.buffers()]:
                    dist.broadcast(t, src=0)
            self._whole = copy.deepcopy(model).eval()  # whole, refreshed from the shards to evaluate
            shard_model(model)
        return model

    def load(self, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any], path: Path) -> None:
        saved = state.get("parallel", "ddp")  # fsdp checkpoints key the optimiser state by parameter name
        if self.fsdp and saved != "fsdp":
            raise ValueError(f"{path} was written without FSDP (parallel={saved}); resume it with parallel={saved}")
        if saved == "fsdp":  # into the shards, or into a whole model (a resume on one process)
            from .fsdp import load_full_state

            load_full_state(model, opt, state["model"], state["optimizer"])
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around ``model`` when several processes replicate it; else ``model`` itself."""
        if self.d.world_size == 1 or self.fsdp:
            return model
        if self.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.d.device.index] if self.d.device.type == "cuda" else None)

    def whole(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to evaluate: FSDP's whole copy loaded from the shards (so that processes with
        unequal shares of the images run no collectives), else the model itself."""
        if not self.fsdp:
            return model
        from .fsdp import full_model_state

        self._whole.load_state_dict(full_model_state(model, everywhere=True))
        return self._whole

    def model_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The whole state dict (FSDP: gathered to rank 0)."""
        if not self.fsdp:
            return unwrap_model(model).state_dict()
        from .fsdp import full_model_state

        return full_model_state(model)

    def optimizer_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimiser's state dict (FSDP: every parameter's, keyed by name, on rank 0)."""
        if not self.fsdp:
            return opt.state_dict()
        from .fsdp import full_optimizer_state

        return full_optimizer_state(model, opt)

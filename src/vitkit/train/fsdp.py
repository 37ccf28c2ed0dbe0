"""Fully sharded data parallelism (FSDP2, ``torch.distributed.fsdp.fully_shard``) for the trainer.

``parallel=fsdp`` under torchrun shards each Transformer block (as the model lists them: ``transformer_blocks()``) and
then the rest of the model over the processes: every process keeps 1/W of the weights, gradients
and optimiser state, and gathers a block's weights just for its forward and backward. For models
whose training state does not fit one device next to its activations (ViT-L/H, Swin-L at high
resolution). Numerics are DDP's: gradients are averaged over processes (tested equal to one process).

Checkpoints hold full, unsharded state dicts (gathered to rank 0), so ``vitkit eval``, ``predict``
and ``load_weights`` read them like any other and a run can resume with a different process count.
Evaluation runs on a plain copy of the model refreshed from the shards (each process scores its
share of the images without collectives, so unequal shares cannot deadlock), and the EMA copy is
kept whole on every process.

Swin's window-order fast path and ViT's class-token tail call block methods other than
``forward``; with FSDP's hooks on the blocks both models take their reference paths instead
(same results, somewhat slower).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def shard_model(model: nn.Module) -> nn.Module:
    """Apply ``fully_shard`` to each Transformer block, then to ``model`` (in place; returns it)."""
    from torch.distributed.fsdp import fully_shard

    for blk in transformer_blocks(model):
        fully_shard(blk)
    fully_shard(model)
    return model


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The Transformer blocks of ``model`` or of the vitkit models inside it (a segmenter's or a
    detector's backbone), as each lists them (``transformer_blocks()``), in forward order."""
    found: dict[int, nn.Module] = {}
    for m in model.modules():
        if callable(getattr(m, "transformer_blocks", None)):
            found.update((id(b), b) for b in m.transformer_blocks())
    if not found:
        raise TypeError(f"FSDP shards a model by its Transformer blocks; {type(model).__name__} contains no "
                        "vitkit model that lists them (transformer_blocks())")
    return list(found.values())


def _options(**kw: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model_state(model: nn.Module, everywhere: bool = False) -> dict[str, torch.Tensor]:
    """The unsharded state dict (a collective: every process calls it). On rank 0 only, on the CPU,
    unless ``everywhere`` (then on every process, on the model's device)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(cpu_offload=not everywhere))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser's state for every parameter, keyed by parameter name, on rank 0 (a collective)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict[str, Any],
                    optimizer_state: dict[str, Any]) -> None:
    """Put full state dicts (every process has read the checkpoint) back into the shards."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, model_state, options=_options())
    set_optimizer_state_dict(model, optimizer, optim_state_dict=optimizer_state, options=_options())


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` whole: a sharded DTensor gathered (a collective), any other tensor as it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t

"""ViT's speed paths: the same numbers as :mod:`vitkit.models.vit`'s reference path, faster.

Each runs only where :func:`vitkit.layers.fastpath.may_take` allows it (``vitkit.fast_paths``
on, no hook watching the modules it replaces, inference-only ones without autograd, training or
autocast); otherwise vit.py computes the paper's operations module by module.

- **In-place residual sums** (:func:`block_inplace`, inference): the output projections and
  ``fc2`` accumulate straight into the residual stream (``addmm_``), no temporaries.
- **Chunked inference** (:func:`inference_chunk`): the blocks run on balanced chunks of images,
  so the widest activations stay in cache (:func:`vitkit.layers.fastpath.inference_chunk`).
- **[class]-token tail** (:func:`features_for_head`, inference and training): the head reads the
  class token only, so the last block computes its queries, projection and MLP for that row.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import fastpath
from ..layers.attention import residual_linear_
from ..layers.fastpath import may_take

if TYPE_CHECKING:
    from .vit import Block, VisionTransformer


# ------------------------------------------------------------------------ in-place residual sums
def fusable(blk: "Block") -> bool:
    """Inference without LayerScale, hooks or tracing: :func:`block_inplace` computes the same."""
    return isinstance(blk.ls1, nn.Identity) and may_take(blk, inference=True)


def block_inplace(blk: "Block", x: torch.Tensor) -> torch.Tensor:
    """``blk(x)`` into ``x`` itself (which the caller owns): same sums, no temporaries."""
    B, N, C = x.shape
    rows = x.view(B * N, C)
    residual_linear_(rows, blk.attn.heads(blk.norm1(x), reuse=True).view(B * N, C), blk.attn.proj)
    residual_linear_(rows, blk.mlp.hidden(blk.norm2(x), reuse=True).view(B * N, -1), blk.mlp.fc2)
    return x


# ------------------------------------------------------------------------------ chunked inference
def inference_chunk(model: "VisionTransformer", x: torch.Tensor) -> int:
    """Images per chunk for the model's (B, N, D) tokens ``x`` (0: one piece; always 0 with
    autograd, tracing, autocast or a hook on a block or the final norm)."""
    if not len(model.blocks) or not may_take(*model.blocks, model.norm, inference=True):
        return 0
    B, N, _ = x.shape
    return fastpath.inference_chunk(B, N, model.blocks[0].mlp.fc1.out_features, x.element_size(),
                                    fastpath.chunk_budget())


# ------------------------------------------------------------------------------ [class]-token tail
def tail_applies(model: "VisionTransformer") -> bool:
    """The head reads the [class] token only, so the last block needs no other output — unless
    something watches that block or the final norm (hooks, attention capture) and expects all."""
    if model.global_pool != "token" or not model.blocks:
        return False
    last = model.blocks[-1]
    return not last.attn.capture and may_take(last, model.norm, traceable=True)


def forward_queries(blk: "Block", x: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` tokens of ``blk(x)``, (B, n, D): only they are projected, attend (to every
    token) and go through the MLP. For a last block whose other outputs are never read (the
    [class] token head), it skips ~5/6 of the block's FLOPs; same result."""
    first = x[:, :n]
    first = first + blk.drop_path(blk.ls1(blk.attn.proj_drop(blk.attn.proj(blk.attn.heads(blk.norm1(x), queries=n)))))
    return first + blk.drop_path(blk.ls2(blk.mlp(blk.norm2(first))))


def features_for_head(model: "VisionTransformer", x: torch.Tensor) -> torch.Tensor:
    """What ``model.forward_features(x)`` gives, for the prefix tokens only: (B, 1, D). All blocks
    but the last run on every token (as in ``forward_features``), the last on the [class] token's
    row (:func:`forward_queries`); forward passes and gradients are the same as the full path's,
    ~7% fewer FLOPs for 12 blocks."""
    x, _ = model._embed(x)
    B = x.shape[0]
    last = model.blocks[-1]
    chunk = inference_chunk(model, x)
    pieces = []
    for i in range(0, B, chunk) if chunk else (0,):  # no loop over a batch size that may be symbolic
        t = model._trunk(x[i: i + chunk] if chunk else x, model.blocks[:-1], norm=False)
        if model.grad_checkpointing and torch.is_grad_enabled():
            t = checkpoint(forward_queries, last, t, model.num_prefix_tokens, use_reentrant=False)
        else:
            t = forward_queries(last, t, model.num_prefix_tokens)
        pieces.append(model.norm(t))
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

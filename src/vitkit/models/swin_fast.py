"""Swin's speed paths: the same numbers as :mod:`vitkit.models.swin`'s reference path, faster.

Each runs only where :func:`vitkit.layers.fastpath.may_take` allows it (``vitkit.fast_paths``
on, no hook watching the modules it replaces, inference-only ones without autograd, training or
autocast); otherwise swin.py computes the paper's operations module by module.

- **Window-ordered residual stream** (:func:`window_stream`, a stage's blocks). LayerNorm, MLP and
  the residual sums act token by token, so between blocks the stream can stay in window order:
  one gather per block (regular ↔ shifted windows, the cyclic shift folded into the index)
  replaces pad, roll, partition, reverse and roll around every attention. A map that is not a
  window multiple is padded once per stage and cropped at its end; the masks keep padding unseen
  by real tokens. Inference adds chunks of images (:func:`~vitkit.layers.fastpath.inference_chunk`)
  and output projections that accumulate into the stream in place.
- **Chunked inference attention** (:func:`attention_in_chunks`): batched matmuls on a few hundred
  (window, head) pairs at a time instead of the CPU fused kernel, which is tiled for long sequences.
- **Caches**: relative position indices, the combined bias + shift mask, its copy repeated over
  the batch and the stream's gather indices are kept between calls (never while tracing).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.attention import residual_linear_
from ..layers import fastpath
from ..layers.fastpath import autocast_active, may_take, symbolic
from ..layers.window import window_order

ATTENTION_CHUNK_PAIRS = 256  # (window, head) pairs per inference attention chunk: 256 × 49² fp32 ≈ 2.4 MB of logits
BATCHED_MASK_BYTES = 16 << 20  # the batch-repeated copy of a cached mask is kept up to this size


def _cache(module: nn.Module, name: str) -> dict:
    """A dict kept on ``module`` between calls (created on first use)."""
    store = module.__dict__.get(name)
    if store is None:
        store = module.__dict__[name] = {}
    return store


def clear_caches(module: nn.Module) -> None:
    """Drop every cache this module kept for the speed paths (they refill on the next call)."""
    for name in ("_index_cache", "_mask_cache", "_batched_mask", "_perm_cache"):
        module.__dict__.pop(name, None)


# ------------------------------------------------------------------------ window attention caches
def relative_index(attn: nn.Module, wh: int, ww: int, make: Any) -> torch.Tensor:
    """``make()`` (the (N, N) relative position index of a wh×ww window), kept per size."""
    if not may_take():
        return make()
    # inference tensors serve inference mode only (autograd cannot save them for backward)
    key = (wh, ww, attn.window_size, attn.relative_position_bias_table.device, torch.is_inference_mode_enabled())
    store = _cache(attn, "_index_cache")
    if key not in store:
        store[key] = make()
    return store[key]


def _mask_key(attn: nn.Module, wh: int, ww: int, dtype: torch.dtype) -> tuple | None:
    """The cache key of the additive mask; None when it must not be cached (the table needs its
    gradient, autocast, tracing or the switch off)."""
    table = attn.relative_position_bias_table
    if (torch.is_grad_enabled() and table.requires_grad) or autocast_active() or not may_take():
        return None
    return (wh, ww, dtype, table.device, table._version, torch.is_inference_mode_enabled())


def cached_mask(attn: nn.Module, wh: int, ww: int, mask: torch.Tensor | None, dtype: torch.dtype
                ) -> torch.Tensor | None:
    """The additive mask kept by :func:`keep_mask` for these sizes, dtype, mask object and table
    version, or None."""
    key = _mask_key(attn, wh, ww, dtype)
    hit = None if key is None else _cache(attn, "_mask_cache").get(key)
    if hit is not None and hit[0] is mask and hit[1] is attn.relative_position_bias_table:
        return hit[2]  # the mask object itself: sizes made it, lru-cached
    return None


def keep_mask(attn: nn.Module, wh: int, ww: int, mask: torch.Tensor | None, dtype: torch.dtype,
              bias: torch.Tensor) -> torch.Tensor:
    """Keep ``bias`` (one entry: sizes change rarely) where caching applies; returns what to use."""
    key = _mask_key(attn, wh, ww, dtype)
    if key is None:
        return bias
    bias = bias.contiguous()
    store = _cache(attn, "_mask_cache")
    store.clear()
    store[key] = (mask, attn.relative_position_bias_table, bias)
    return bias


def batched_mask(attn: nn.Module, bias: torch.Tensor, BnW: int) -> torch.Tensor:
    """(nW, heads, N, N) mask repeated over the batch → (B·nW, heads, N, N). The copy of a cached
    mask is kept too when it is small (≤ ``BATCHED_MASK_BYTES``), and sliced for fewer images."""
    nW, h, N, _ = bias.shape
    hit = attn.__dict__.get("_batched_mask")
    if hit is not None and hit[0] is bias and hit[1].shape[0] >= BnW:
        return hit[1][:BnW]  # the copy is periodic over images: its first B'·nW rows serve B' images
    full = bias.expand(BnW // nW, nW, h, N, N).reshape(BnW, h, N, N)
    if (full.numel() * full.element_size() <= BATCHED_MASK_BYTES and may_take()
            and any(bias is e[2] for e in attn.__dict__.get("_mask_cache", {}).values())):
        attn.__dict__["_batched_mask"] = (bias, full)
    return full


# ------------------------------------------------------------------ chunked inference attention
def chunked_attention_applies(attn: nn.Module) -> bool:
    return may_take(attn, inference=True)


def attention_in_chunks(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        bias: torch.Tensor) -> torch.Tensor:
    """Inference: the windows' attention as batched matmuls, a few hundred (window, head) pairs
    at a time, so the logits stay in cache: mask + scale·QKᵀ (one ``baddbmm``), softmax in place,
    times V, written straight into (B·nW, N, heads, hd) order (the output projection's input).

    Same sums as the fused kernel. It exists because the CPU fused kernel is built for long
    sequences: on 49-token windows its per-(window, head) tiling costs more than the maths
    (Swin-T, 2 CPU threads: 107 ms of attention per batch of 8 against ~70 ms this way)."""
    BnW, h, N, hd = q.shape
    nW = bias.shape[0]
    target = max(1, ATTENTION_CHUNK_PAIRS // h)  # windows per chunk
    if nW >= target:  # a divisor of nW, so that every chunk's masks are one slice of the table
        ch = max(d for d in range(1, target + 1) if nW % d == 0)
    else:  # whole images (nW windows each); the mask repeated for them, cached
        ch = nW * (target // nW)
    ch = min(ch, BnW)
    masks = (bias if ch <= nW else batched_mask(attn, bias, ch)).contiguous()  # (≥ ch, heads, N, N), periodic in nW
    out = q.new_empty(BnW, N, h, hd)
    logits = q.new_empty(ch * h, N, N)
    heads_out = q.new_empty(ch * h, N, hd)
    scale = hd ** -0.5
    for i in range(0, BnW, ch):
        n = min(ch, BnW - i)
        j = i % nW if ch <= nW else 0
        a = torch.baddbmm(masks[j: j + n].view(n * h, N, N), q[i: i + n].reshape(n * h, N, hd),
                          k[i: i + n].reshape(n * h, N, hd).transpose(1, 2), alpha=scale, out=logits[: n * h])
        torch.softmax(a, dim=-1, out=a)
        o = torch.bmm(a, v[i: i + n].reshape(n * h, N, hd), out=heads_out[: n * h])
        out[i: i + n].copy_(o.view(n, h, N, hd).transpose(1, 2))
    return out


# ------------------------------------------------------------------ window-ordered residual stream
def stream_applies(stage: nn.Module, H: int, W: int) -> bool:
    """The stage's blocks may run on the window-ordered stream: no hook anywhere in them (hooks see
    the reference's (B, H, W, C) maps). Plain tensor operations: also while tracing at fixed sizes;
    at symbolic H×W (dynamic export) it stands aside, since it picks its gathers by the geometry."""
    return may_take(stage.blocks, traceable=not symbolic(H, W))


def _perm(stage: nn.Module, H: int, W: int, src: tuple | None, dst: tuple | None,
          device: torch.device) -> torch.Tensor:
    """Gather index from token order ``src`` to ``dst`` (window geometries; None = row-major)."""
    store = key = None
    if may_take():  # inference tensors serve inference mode only
        store, key = _cache(stage, "_perm_cache"), (H, W, src, dst, device, torch.is_inference_mode_enabled())
        if key in store:
            return store[key]
    inv_src = None if src is None else torch.argsort(window_order(H, W, *src, device=device))
    if dst is None:
        perm = inv_src
    else:
        perm = window_order(H, W, *dst, device=device)
        perm = perm if inv_src is None else inv_src[perm]
    if store is not None:
        if len(store) >= 32:
            store.clear()
        store[key] = perm
    return perm


def window_stream(stage: nn.Module, x: torch.Tensor, geo: dict[bool, tuple], masks: dict) -> torch.Tensor:
    """The stage's blocks on its (B, H, W, C) map ``x`` (after patch merging), through the
    window-ordered stream; the same (B, H, W, C) result as running each block on the map."""
    B, H, W, C = x.shape
    wh, ww = geo[False][:2]
    Hp, Wp = -(-H // wh) * wh, -(-W // ww) * ww
    if Hp != H or Wp != W:
        x = F.pad(x, (0, 0, 0, Wp - W, 0, Hp - H))
    x = x.reshape(B, Hp * Wp, C)  # (B, L, C), row-major
    inference = may_take(stage.blocks, inference=True)  # chunks and in-place sums
    chunk = 0
    if inference:
        chunk = fastpath.inference_chunk(B, Hp * Wp, stage.blocks[0].mlp.fc1.out_features, x.element_size(),
                                         fastpath.chunk_budget())
    order = None
    owned = Hp != H or Wp != W or not isinstance(stage.downsample, nn.Identity)  # x is no caller's tensor
    for blk in stage.blocks:
        g = geo[blk.shifted]
        g = None if g[1] == Wp and g[2] == g[3] == 0 else g  # one window column, no shift: row-major
        if g != order:
            x = x.index_select(1, _perm(stage, H, W, order, g, x.device))  # (B, L, C) in g's order
            order, owned = g, True
        x = stage._run(block_windows, blk, x, wh, ww, masks[blk.shifted], chunk, owned and inference)
    if order is not None:
        x = x.index_select(1, _perm(stage, H, W, order, None, x.device))
    x = x.view(B, Hp, Wp, C)
    return x[:, :H, :W] if Hp != H or Wp != W else x


def block_windows(blk: nn.Module, x: torch.Tensor, wh: int, ww: int, mask: torch.Tensor | None,
                  chunk: int = 0, inplace: bool = False) -> torch.Tensor:
    """A :class:`~vitkit.models.swin.SwinBlock` on (B, nW·N, C) tokens already in its window order:
    no padding, shift or partition work here. ``chunk`` > 0 (inference only) runs ``chunk`` images
    at a time into one output, so the block's intermediates (the 4C-wide MLP activation above all)
    stay small and cache-resident instead of being allocated afresh at full batch size.
    ``inplace`` (inference, the caller owns ``x``): the output projections accumulate into ``x``
    itself (:func:`~vitkit.layers.attention.residual_linear_`)."""
    B, L, C = x.shape
    if inplace and (chunk <= 0 or chunk >= B):
        rows = x.view(B * L, C)
        residual_linear_(rows, blk.attn.heads(blk.norm1(x).view(-1, wh * ww, C), wh, ww, mask, reuse=True)
                         .view(B * L, C), blk.attn.proj)
        residual_linear_(rows, blk.mlp.hidden(blk.norm2(x), reuse=True).view(B * L, -1), blk.mlp.fc2)
        return x
    if chunk <= 0 or chunk >= B:
        return _tokens(blk, x, wh, ww, mask)
    out = torch.empty_like(x)
    for b in range(0, B, chunk):
        _tokens(blk, x[b: b + chunk], wh, ww, mask, out=out[b: b + chunk])
    return out


def _tokens(blk: nn.Module, x: torch.Tensor, wh: int, ww: int, mask: torch.Tensor | None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    B, L, C = x.shape
    y = blk.attn(blk.norm1(x).view(-1, wh * ww, C), wh, ww, mask)  # (B*nW, N, C)
    x = x + blk.drop_path(y.view(B, L, C))
    return torch.add(x, blk.drop_path(blk.mlp(blk.norm2(x))), out=out)

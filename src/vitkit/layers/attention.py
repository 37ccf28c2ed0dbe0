"""Multi-head self-attention with fused qkv, through ``F.scaled_dot_product_attention``.

The maps can be captured for analysis (attention rollout, mean attention distance) without
switching the model to another implementation: when ``capture`` is set on a module, the same
q, k, v and the same additive bias go through an explicit softmax instead of the fused kernel,
and the probabilities are kept in ``attn_map``. Both paths share :func:`attention`, and a test
proves they agree.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import workspace


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention on (B, heads, N, head_dim) tensors.

    ``bias`` is added to the logits (relative position bias, shift masks); it broadcasts to
    (B, heads, N, N). With ``need_weights`` the probabilities (B, heads, N, N) are returned too.
    """
    if not need_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p), None
    scale = q.shape[-1] ** -0.5
    logits = (q * scale) @ k.transpose(-2, -1)  # (B, h, N, N)
    if bias is not None:
        logits = logits + bias
    probs = logits.softmax(dim=-1)
    dropped = F.dropout(probs, p=dropout_p) if dropout_p > 0 else probs
    return dropped @ v, probs


def residual_linear_(x: torch.Tensor, a: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """``x += linear(a)`` in place on 2-D (rows, features) tensors: the matmul accumulates straight
    into the residual stream (no temporary, no separate sum). For inference (no autograd)."""
    x.addmm_(a, linear.weight.t())
    if linear.bias is not None:
        x.add_(linear.bias)
    return x


def project_qkv(qkv: nn.Linear, x: torch.Tensor, reuse: bool = False) -> torch.Tensor:
    """``qkv(x)``; with ``reuse`` (fused inference paths: the result is consumed within the call,
    and they have checked that no hook watches ``qkv``) into a buffer kept between calls
    (:func:`vitkit.layers.workspace.linear`)."""
    return workspace.linear("attn.qkv", qkv, x) if reuse else qkv(x)


class Attention(nn.Module):
    """Multi-head self-attention (paper ViT §3.1, Eq. 2) with one fused qkv projection."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        # Analysis hooks: set ``capture = True`` to keep the next forward's attention map.
        self.capture = False
        self.attn_map: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None, pos: Any = None) -> torch.Tensor:
        return self.proj_drop(self.proj(self.heads(x, bias, pos=pos)))

    def heads(self, x: torch.Tensor, bias: torch.Tensor | None = None, queries: int | None = None,
              reuse: bool = False, pos: Any = None) -> torch.Tensor:
        """Everything before the output projection: the heads' outputs side by side, (B, N, C).

        ``queries`` = n: only the first n tokens ask (their outputs, (B, n, C), are computed; every
        token is still attended to), for a last block whose other outputs nobody reads. ``reuse``:
        see :func:`project_qkv`. ``pos``: position inside attention (relative offsets, rotary
        embeddings; :mod:`vitkit.layers.pos_embed`), called as ``q, k, bias = pos(self, q, k, bias)``."""
        B, N, C = x.shape
        if pos is not None and queries is not None:
            raise ValueError("queries= (the class-token tail) does not take position inside attention (pos=)")
        if queries is not None and queries < N and not self.capture:
            h, hd = self.num_heads, self.head_dim
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, :queries], w[:C], None if b is None else b[:C])  # row slices: views
            kv = F.linear(x, w[C:], None if b is None else b[C:]).reshape(B, N, 2, h, hd)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
            q = q.reshape(B, queries, h, hd).transpose(1, 2)
            out, _ = attention(q, k, v, None if bias is None else bias[..., :queries, :],
                               dropout_p=self.attn_drop if self.training else 0.0)
            return out.transpose(1, 2).reshape(B, queries, C)
        qkv = project_qkv(self.qkv, x, reuse).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, N, hd)
        if pos is not None:
            q, k, bias = pos(self, q, k, bias)
        out, probs = attention(
            q, k, v, bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            need_weights=self.capture,
        )
        if self.capture:
            self.attn_map = probs.detach()
        return out.transpose(1, 2).reshape(B, N, C)  # (B, N, C), a view of the fused kernel's output

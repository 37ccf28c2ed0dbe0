"""Attention rollout (Abnar & Zuidema, ACL 2020), as used for the ViT paper's Fig. 6 (§4.5).

Each layer's attention A (heads fused, by default averaged) is mixed with the identity to account
for the residual connection and renormalised, Â = (A + I) / rowsum(A + I); the rollout is the
product Â_L ··· Â_1, whose row i says how much output token i draws from each input token.

For Swin the product runs over blocks at their own resolution: window maps are applied in place on
the feature map (undoing the shift and padding), and patch merging maps a token to the mean of its
2×2 children (:func:`merge_rollout`), so every row still sums to one and ends on the stage-0 patch
grid. :func:`swin_rollout` evaluates the pooled output's row from the output backwards.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..train.distributed import unwrap_model
from .capture import AttentionLayer, WindowGeometry, apply_window_attention, capture_attention

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attn: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(…, heads, N, N) → (…, N, N): average (the paper), or max/min over heads."""
    if head_fusion == "mean":
        return attn.mean(dim=-3)
    if head_fusion == "max":
        return attn.amax(dim=-3)
    if head_fusion == "min":
        return attn.amin(dim=-3)
    raise ValueError(f"head_fusion={head_fusion!r} is not supported; choose one of {HEAD_FUSIONS}")


def rollout_step(rollout: torch.Tensor | None, attn: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """One layer: (B, heads, N, N) probabilities and the rollout so far (B, N, N) or None → Â·R."""
    a = fuse_heads(attn, head_fusion)  # (B, N, N)
    a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)  # the residual path
    a = a / a.sum(dim=-1, keepdim=True)
    return a if rollout is None else a @ rollout


def attention_rollout(maps: Sequence[torch.Tensor], head_fusion: str = "mean") -> torch.Tensor:
    """Rollout of a list of per-layer attention maps (B, heads, N, N), first layer first → (B, N, N)."""
    if not maps:
        raise ValueError("attention_rollout needs at least one attention map")
    result = None
    for attn in maps:
        result = rollout_step(result, attn, head_fusion)
    return result


def merge_rollout(r: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Swin patch merging for a rollout map (B, H, W, K) → (B, ⌈H/2⌉, ⌈W/2⌉, K): each merged token
    is the mean of its real 2×2 children (padding, on odd sizes, is not a child)."""
    B, H, W, K = r.shape
    if size != (-(-H // 2), -(-W // 2)):
        raise ValueError(f"cannot merge a {H}x{W} map into {size[0]}x{size[1]}; Swin merging halves each side")
    ones = r.new_ones(1, H, W, 1)
    if H % 2 or W % 2:
        r, ones = (F.pad(t, (0, 0, 0, W % 2, 0, H % 2)) for t in (r, ones))
    H2, W2 = size
    total = r.view(B, H2, 2, W2, 2, K).sum(dim=(2, 4))  # (B, H2, W2, K)
    count = ones.view(1, H2, 2, W2, 2, 1).sum(dim=(2, 4))
    return total / count


def _split_rollout(v: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Transpose of :func:`merge_rollout` on a weight map (B, H2, W2, 1) → (B, H, W, 1): each
    child receives its parent's weight divided by the parent's number of real children."""
    H, W = size
    ones = F.pad(v.new_ones(1, H, W, 1), (0, 0, 0, W % 2, 0, H % 2))
    count = ones.view(1, v.shape[1], 2, v.shape[2], 2, 1).sum(dim=(2, 4))  # (1, H2, W2, 1)
    share = (v / count).repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    return share[:, :H, :W]


def swin_rollout(maps: Sequence[torch.Tensor], geometry: Sequence[WindowGeometry]) -> torch.Tensor:
    """Rollout of a Swin model from its average-pooled output to its stage-0 patches, (B, H0, W0).

    ``maps``: each block's window maps with heads fused, (B·nW, N, N), first block first, and the
    blocks' :class:`WindowGeometry`. Equal to the mean row of Â_L·M·…·Â_1 (M: patch merging), but
    computed from the output backwards as a row vector, so memory is one feature map per image
    rather than an (H·W)×(H0·W0) matrix.
    """
    last = geometry[-1]
    B = maps[-1].shape[0] // last.num_windows
    v = maps[-1].new_full((B, last.H, last.W, 1), 1.0 / (last.H * last.W))  # the average pool
    for a, g in zip(reversed(maps), reversed(geometry)):
        if v.shape[1:3] != (g.H, g.W):
            v = _split_rollout(v, (g.H, g.W))
        rowsum = apply_window_attention(v.new_ones(B, g.H, g.W, 1), a, g)
        u = v / (rowsum + 1)  # vᵀ(A + I)/(rowsum + 1) = uᵀA + uᵀ
        v = apply_window_attention(u, a.transpose(-1, -2), g) + u
    return v[..., 0]


@torch.no_grad()
def rollout_map(model: nn.Module, images: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """Rollout from the model's output representation to its input patches, (B, Gh, Gw).

    ViT with a [class] token: the class token's row (the paper's Fig. 6); ViT with GAP and Swin:
    the mean of the rows of the tokens that are pooled. Swin maps sum to one; ViT maps lose the
    share left on the [class] token, which has no place in the image. Memory: one N×N rollout
    per image (ViT); the heads-fused window maps of every block plus one feature map (Swin).
    """
    was_training = model.training
    model.eval()
    state: dict[str, torch.Tensor] = {}
    swin_maps: list[torch.Tensor] = []
    swin_geometry: list[WindowGeometry] = []

    def on_map(layer: AttentionLayer, attn: torch.Tensor, g: WindowGeometry | None) -> None:
        if g is None:  # ViT: (B, heads, N, N), rolled forward as it comes
            state["r"] = rollout_step(state.get("r"), attn.float(), head_fusion)
        else:  # Swin: keep the fused (B·nW, N, N) maps, rolled back from the output at the end
            swin_maps.append(fuse_heads(attn.float(), head_fusion))
            swin_geometry.append(g)

    try:
        with capture_attention(model, "all", callback=on_map):
            model(images)
    finally:
        model.train(was_training)
    if swin_maps:
        return swin_rollout(swin_maps, swin_geometry)
    r = state["r"]
    vit = unwrap_model(model)  # a wrapper (DDP, compile) ran the forward; the attributes are the model's
    p = vit.num_prefix_tokens
    Gh, Gw = images.shape[-2] // vit.stride, images.shape[-1] // vit.stride
    rows = r[:, 0, p:] if vit.global_pool == "token" else r[:, p:, p:].mean(dim=1)  # (B, Gh·Gw)
    return rows.reshape(-1, Gh, Gw)

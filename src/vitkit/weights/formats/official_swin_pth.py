"""Microsoft's official Swin ``.pth`` (github.com/microsoft/Swin-Transformer): the state dict sits
under ``model``; stages are ``layers.{s}`` with patch merging at the END of stages 0–2 (vitkit: at
the start of stages 1–3); ``relative_position_index`` and ``attn_mask`` buffers are stored but
are functions of the window size and input size, so they are dropped and recomputed, never trusted
(a fine-tuned file can carry stale ones). The absolute position embedding of the paper's ablation
is stored as tokens (1, H·W, C); vitkit keeps it as a grid (1, H, W, C)."""
from __future__ import annotations

import torch

from . import Format
from .table import Rule, Transform, wb


def _tokens_to_grid(t: torch.Tensor) -> torch.Tensor:
    side = int(round(t.shape[1] ** 0.5))
    if side * side != t.shape[1]:
        raise ValueError(f"absolute_pos_embed has {t.shape[1]} tokens, not a square grid")
    return t.reshape(1, side, side, t.shape[-1])  # (1, N, C) → (1, H, W, C)


TOKENS_TO_GRID = Transform("tokens_to_grid", _tokens_to_grid, lambda t, ctx: t.flatten(1, 2))

BLOCK = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")


def swin_block_rules(src_block: str, dst_block: str = "stages.{s}.blocks.{b}") -> list[Rule]:
    """Rows for one Swin block whose inner names are the official ones (official code, timm)."""
    rules = [r for name in BLOCK for r in wb(f"{src_block}.{name}", f"{dst_block}.{name}")]
    rules.append(Rule(f"{src_block}.attn.relative_position_bias_table", f"{dst_block}.attn.relative_position_bias_table"))
    return rules


STALE_BUFFERS = {
    "layers.{s}.blocks.{b}.attn.relative_position_index": "buffer recomputed from the window size",
    "layers.{s}.blocks.{b}.attn_mask": "buffer recomputed for each input size (pad-then-shift rule)",
}

RULES: list[Rule] = [
    *wb("patch_embed.proj", "patch_embed.proj"),
    *wb("patch_embed.norm", "patch_embed.norm"),
    Rule("absolute_pos_embed", "absolute_pos_embed", TOKENS_TO_GRID),
    *swin_block_rules("layers.{s}.blocks.{b}"),
    *wb("layers.{s}.downsample.norm", "stages.{s+1}.downsample.norm"),  # end of s → start of s+1
    Rule("layers.{s}.downsample.reduction.weight", "stages.{s+1}.downsample.reduction.weight"),
    *wb("norm", "norm"),
    *wb("head", "head"),
]


def detect(keys: set[str]) -> bool:
    """Merging stored in stage 0 (only the official layout has one there), or an ``attn_mask``."""
    return "layers.0.downsample.reduction.weight" in keys or any(
        k.startswith("layers.") and k.endswith(".attn_mask") for k in keys)


FORMAT = Format("official_swin_pth", "Microsoft's official Swin .pth (state dict under 'model')",
                detect, RULES, STALE_BUFFERS)

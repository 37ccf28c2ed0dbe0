"""Fitting a checkpoint's tensors to a model of another resolution or window (ViT §3.2, Swin §4.1).

Position embeddings: 2-D interpolation of the grid part, [class] token kept apart. Choices:

- ``"bicubic"`` (default): what the model itself does when it meets another input size on the fly
  and in ``set_input_size``, so a checkpoint loaded into a 384 model gives the same numbers as the
  224 model run at 384; also what the common PyTorch ports use, so files stay interchangeable.
- ``"bilinear"``: the same grid convention (pixel centres, ``align_corners=False``), linear.
- ``"linear_spline"``: the official JAX code's ``scipy.ndimage.zoom(order=1)``, which maps the
  corner tokens onto the corner tokens (``align_corners=True``); use it to reproduce the paper's
  fine-tuning numbers bit for bit.

Swin relative-bias tables are resampled bicubically on their (2M−1)×(2M−1) grid of offsets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .pos_embed import resample_abs_pos_embed
from .window import resample_relative_bias_table

INTERPOLATIONS = ("bicubic", "bilinear", "linear_spline")


def square_grid(n: int) -> tuple[int, int]:
    side = int(round(n ** 0.5))
    if side * side != n:
        raise ValueError(f"{n} position tokens are not a square grid; pass the checkpoint's grid size")
    return side, side


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """(1, prefix + Ho·Wo, D) → (1, prefix + Hn·Wn, D); the prefix ([class]) rows are returned
    unchanged. ``old_grid`` defaults to a square. See the module docstring for ``interpolation``."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r} is not supported; choose one of {', '.join(INTERPOLATIONS)}")
    old_grid = old_grid or square_grid(pos_embed.shape[1] - num_prefix_tokens)
    if interpolation != "linear_spline":
        return resample_abs_pos_embed(pos_embed, new_grid, old_grid, num_prefix_tokens, mode=interpolation)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    D = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], D).permute(0, 3, 1, 2).float()  # (1, D, Ho, Wo)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], D).to(pos_embed.dtype)  # (1, Hn·Wn, D)
    return torch.cat([prefix, grid], dim=1)


def resample_grid_embed(embed: torch.Tensor, new_grid: tuple[int, int]) -> torch.Tensor:
    """Swin's absolute position embedding (1, H, W, C) → (1, Hn, Wn, C), bicubic (as the model does)."""
    if tuple(embed.shape[1:3]) == tuple(new_grid):
        return embed
    x = F.interpolate(embed.permute(0, 3, 1, 2).float(), size=tuple(new_grid), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).to(embed.dtype).contiguous()


def resample_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """((2M−1)², heads) → ((2·window−1)², heads), bicubic on the offset grid (Swin §4.1)."""
    return resample_relative_bias_table(table, window)


def embed_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """((2m−1)², heads) → ((2·window−1)², heads) with the small table at the centre (zeros around).

    Exact, not an interpolation, for a stage whose map is smaller than the window: such a stage
    attends within one m×m window (m = its side), so only offsets |dy|, |dx| < m are ever read.
    Peers that shrink the table of such a stage (timm) store just those offsets."""
    side, heads = int(round(table.shape[0] ** 0.5)), table.shape[1]
    new_side = 2 * window - 1
    if side * side != table.shape[0] or side > new_side:
        raise ValueError(f"cannot embed a {table.shape[0]}-row bias table into a window of {window}")
    out = table.new_zeros(new_side, new_side, heads)
    lo = window - 1 - (side - 1) // 2
    out[lo:lo + side, lo:lo + side] = table.reshape(side, side, heads)
    return out.reshape(new_side * new_side, heads)

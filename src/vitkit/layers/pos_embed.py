"""Resampling of learned absolute position embeddings to a new grid (ViT §3.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resample_abs_pos_embed(
    pos_embed: torch.Tensor,
    new_size: tuple[int, int],
    old_size: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample (1, prefix + Ho*Wo, D) position embeddings to (1, prefix + Hn*Wn, D).

    The prefix ([class]) tokens are kept apart and untouched; the grid part is interpolated by its
    location in the image ("2D interpolation of the pre-trained position embeddings", ViT §3.2).
    ``old_size`` defaults to a square grid. Bicubic is the default: it is what the common PyTorch
    ports use and keeps checkpoints interchangeable with them; the official JAX code uses a linear
    spline (``mode="bilinear"``, ``antialias=False`` is the closest match).
    """
    traced = any(isinstance(s, torch.SymInt) for s in new_size)  # dynamic export: keep the symbolic sizes
    new_size = tuple(new_size) if traced else (int(new_size[0]), int(new_size[1]))
    n_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_size is None:
        side = int(round(n_grid ** 0.5))
        if side * side != n_grid:
            raise ValueError(
                f"position embedding has {n_grid} grid tokens, which is not a square; pass old_size=(H, W)"
            )
        old_size = (side, side)
    if old_size[0] * old_size[1] != n_grid:
        raise ValueError(f"old_size={old_size} does not match the {n_grid} grid tokens of the position embedding")
    if not traced and tuple(old_size) == new_size:
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dtype = grid.dtype
    D = grid.shape[-1]
    grid = grid.reshape(1, old_size[0], old_size[1], D).permute(0, 3, 1, 2).float()  # (1, D, Ho, Wo)
    if mode in ("bilinear", "bicubic"):
        grid = F.interpolate(grid, size=new_size, mode=mode, align_corners=False, antialias=antialias)
    else:
        grid = F.interpolate(grid, size=new_size, mode=mode)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_size[0] * new_size[1], D).to(dtype)
    return torch.cat([prefix, grid], dim=1)

"""Window mathematics for Swin (Liu et al., ICCV 2021, §3.2): partition, shift masks, relative bias.

Pure functions, each with a test of its invariants. Everything is on (B, H, W, C) feature maps.

The shifted-window rule implemented here is the one the paper means at *any* size: the map is
padded to a multiple of the window *before* the cyclic shift, and two tokens of a window may
attend to each other only if they were neighbours before the shift; padding is attended by nobody
(padding tokens only see padding, so their discarded rows stay finite).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

MASK_VALUE = float("-inf")


def window_geometry(H: int, W: int, window: int, shifted: bool) -> tuple[int, int, int, int]:
    """Effective (window_h, window_w, shift_h, shift_w) for an H×W map.

    Along a side not larger than the window, the whole side is one window and is never shifted
    (paper: "if the resolution of a stage equals the window size, no shift"); otherwise the window
    is ``window`` and shifted blocks move by ⌊window/2⌋.
    """
    wh, ww = min(window, H), min(window, W)
    sh = window // 2 if shifted and H > window else 0
    sw = window // 2 if shifted and W > window else 0
    return wh, ww, sh, sw


def window_partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, H, W, C) with H % wh == W % ww == 0 → (B * nW, wh * ww, C), windows in row-major order."""
    B, H, W, C = x.shape
    x = x.view(B, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)  # (B, nH, nW, wh, ww, C)
    return x.reshape(-1, wh * ww, C)


def window_reverse(windows: torch.Tensor, wh: int, ww: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, wh * ww, C) → (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)  # (B, nH, wh, nW, ww, C)
    return x.reshape(-1, H, W, C)


def window_order(H: int, W: int, wh: int, ww: int, sh: int, sw: int,
                 device: torch.device | None = None) -> torch.Tensor:
    """(Hp·Wp,) gather index: window-ordered token k comes from row-major position ``order[k]`` of
    the H×W map padded to (Hp, Wp).

    One ``index_select`` with it does pad-then-roll by (−sh, −sw) and :func:`window_partition` at
    once: ``x.flatten(1, 2)[:, order]`` equals ``window_partition(roll(x, (−sh, −sw)), wh, ww)``
    viewed as (B, nW·N, C), for an already padded x. Its inverse permutation undoes it.
    """
    Hp, Wp = -(-H // wh) * wh, -(-W // ww) * ww
    rows = (torch.arange(Hp, device=device) + sh) % Hp  # source row of each shifted row
    cols = (torch.arange(Wp, device=device) + sw) % Wp
    src = rows[:, None] * Wp + cols[None, :]  # (Hp, Wp) source position of each shifted position
    return window_partition(src[None, :, :, None], wh, ww).reshape(-1)  # (nW·N,)


def _region_ids(size: int, padded: int, shift: int, device: torch.device | None) -> torch.Tensor:
    """Region of each position of one axis, in the shifted frame: 0 = in place, 1 = wrapped
    around by the cyclic shift, 2 = padding."""
    pos = torch.arange(padded, device=device)
    orig = (pos + shift) % padded  # where the token at this position came from
    ids = (pos >= padded - shift).long() if shift else torch.zeros_like(pos)
    return torch.where(orig >= size, torch.full_like(ids, 2), ids)


@functools.lru_cache(maxsize=64)  # same size → same tensor, so per-size caches can key on it
def shift_window_mask(
    H: int, W: int, wh: int, ww: int, sh: int, sw: int, device: torch.device | None = None
) -> torch.Tensor | None:
    """Boolean (nW, N, N) mask, True where query i may attend key j, for the padded-then-shifted
    map of an H×W feature map; ``None`` when no position needs masking (no shift, no padding)."""
    Hp, Wp = -(-H // wh) * wh, -(-W // ww) * ww
    if sh == 0 and sw == 0 and Hp == H and Wp == W:
        return None
    rows = _region_ids(H, Hp, sh, device)  # (Hp,)
    cols = _region_ids(W, Wp, sw, device)  # (Wp,)
    pad = (rows[:, None] == 2) | (cols[None, :] == 2)  # (Hp, Wp)
    region = torch.where(pad, torch.full_like(pad, 9, dtype=torch.long), rows[:, None] * 3 + cols[None, :])
    region = window_partition(region[None, :, :, None], wh, ww).squeeze(-1)  # (nW, N)
    return region[:, :, None] == region[:, None, :]  # (nW, N, N)


def relative_position_index(wh: int, ww: int, window: int) -> torch.Tensor:
    """(N, N) indices into a (2·window−1)² bias table for a wh×ww window (wh, ww ≤ window).

    Entry [i, j] is the table row of the relative offset (dy, dx) = pos_i − pos_j; the table is laid
    out row-major over dy, dx ∈ [−window+1, window−1], as in the official code.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), shifted to ≥ 0
    return rel[0] * (2 * window - 1) + rel[1]


def resample_relative_bias_table(table: torch.Tensor, new_window: int) -> torch.Tensor:
    """Bicubic resampling of a ((2M−1)², heads) relative bias table to ((2M'−1)², heads), on its
    (2M−1)×(2M−1) grid of offsets (Swin §4.1, fine-tuning at a larger window)."""
    side = int(round(table.shape[0] ** 0.5))
    if side * side != table.shape[0]:
        raise ValueError(f"relative bias table has {table.shape[0]} rows, which is not (2M-1)^2")
    new_side = 2 * new_window - 1
    if new_side == side:
        return table
    heads = table.shape[1]
    grid = table.T.reshape(1, heads, side, side).float()
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return grid.reshape(heads, new_side * new_side).T.contiguous().to(table.dtype)

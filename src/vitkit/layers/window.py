"""Window mathematics for Swin (Liu et al., ICCV 2021, §3.2): partition, shift masks, relative bias.

Pure functions, each with a test of its invariants. Everything is on (B, H, W, C) feature maps.

The shifted-window rule implemented here is the one the paper means at *any* size: the map is
padded to a multiple of the window *before* the cyclic shift, and two tokens of a window may
attend to each other only if they were neighbours before the shift; padding is attended by nobody
(padding tokens only see padding, so their discarded rows stay finite).

Traced at symbolic sizes (``torch.export`` with dynamic H×W), one graph must serve every size, so
the geometry may not branch on the size: :func:`window_geometry` then keeps the configured window
M along every side (a side shorter than M is padded up to one window, the padding masked: the same
attention, up to float rounding, as one window of the side's own length with the same relative
offsets) and gives the shift as arithmetic (⌊M/2⌋ when the padded side holds two windows or more,
else 0); the masks are always built and :func:`gather_roll` shifts and crops with a computed index.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .fastpath import symbolic

MASK_VALUE = float("-inf")


def window_geometry(H: int, W: int, window: int, shifted: bool) -> tuple[int, int, int, int]:
    """Effective (window_h, window_w, shift_h, shift_w) for an H×W map.

    Along a side not larger than the window, the whole side is one window and is never shifted
    (paper: "if the resolution of a stage equals the window size, no shift"); otherwise the window
    is ``window`` and shifted blocks move by ⌊window/2⌋. At symbolic sizes: the branch-free form
    of the module docstring (window ``window`` on both sides, the shift computed).
    """
    if symbolic(H, W):
        half = window // 2 if shifted else 0
        # min(windows − 1, 1) is 0 for one window along the side, 1 for more: a symbolic min, no branch
        sh = half * torch.sym_min(ceil_div(H, window) - 1, 1)
        sw = half * torch.sym_min(ceil_div(W, window) - 1, 1)
        return window, window, sh, sw
    wh, ww = min(window, H), min(window, W)
    sh = window // 2 if shifted and H > window else 0
    sw = window // 2 if shifted and W > window else 0
    return wh, ww, sh, sw


def ceil_div(size: int, n: int) -> int:
    """⌈size / n⌉ as ``(size + n − 1) // n``: no negative operand (the ONNX exporter turns a
    symbolic floor division into a truncating one, so ``-(-size // n)`` would come out wrong)."""
    return (size + n - 1) // n


def padded(size: int, window: int) -> int:
    """``size`` rounded up to a multiple of ``window``."""
    return ceil_div(size, window) * window


def gather_roll(x: torch.Tensor, shifts: tuple[int, int], dims: tuple[int, int],
                keep: tuple[int, int] | None = None) -> torch.Tensor:
    """``torch.roll(x, shifts, dims)`` (|shift| ≤ size), then the first ``keep`` positions along
    each dim (default all), as one gather per dim with the index (i − shift) mod n, i < keep.

    The traced form (symbolic sizes): it takes a computed shift (``torch.roll`` bakes its shifts
    into the graph) and crops without a slice (whose bound the exporter cannot prove for a padded
    size)."""
    keep = keep or tuple(x.shape[d] for d in dims)
    for shift, dim, k in zip(shifts, dims, keep):
        n = x.shape[dim]
        x = x.index_select(dim, _wrap(torch.arange(k, device=x.device) - shift, n))
    return x


def _wrap(i: torch.Tensor, n: int) -> torch.Tensor:
    """``i mod n`` for −n ≤ i < 2n, without a remainder by a size (which the ONNX exporter cannot
    take when the size is symbolic)."""
    i = torch.where(i < 0, i + n, i)
    return torch.where(i >= n, i - n, i)


def window_partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, H, W, C) with H % wh == W % ww == 0 → (B * nW, wh * ww, C), windows in row-major order."""
    B, H, W, C = x.shape
    x = x.view(B, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)  # (B, nH, nW, wh, ww, C)
    if symbolic(H, W):  # whether the permuted windows are viewable depends on the size: copy, unasked
        x = x.clone(memory_format=torch.contiguous_format)
    return x.reshape(-1, wh * ww, C)


def window_reverse(windows: torch.Tensor, wh: int, ww: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, wh * ww, C) → (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)  # (B, nH, wh, nW, ww, C)
    if symbolic(H, W):  # see window_partition
        x = x.clone(memory_format=torch.contiguous_format)
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
    orig = _wrap(pos + shift, padded)  # where the token at this position came from (shift < padded)
    ids = (pos >= padded - shift).long()  # all 0 without a shift (no branch on it: it may be symbolic)
    return torch.where(orig >= size, torch.full_like(ids, 2), ids)


@functools.lru_cache(maxsize=64)  # same size → same tensor, so per-size caches can key on it
def shift_window_mask(
    H: int, W: int, wh: int, ww: int, sh: int, sw: int, device: torch.device | None = None
) -> torch.Tensor | None:
    """Boolean (nW, N, N) mask, True where query i may attend key j, for the padded-then-shifted
    map of an H×W feature map; ``None`` when no position needs masking (no shift, no padding).
    At symbolic sizes always a mask (whether one is needed depends on the size)."""
    Hp, Wp = padded(H, wh), padded(W, ww)
    if not symbolic(H, W, sh, sw) and sh == 0 and sw == 0 and Hp == H and Wp == W:
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

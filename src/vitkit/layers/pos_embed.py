"""Position embeddings of the patch grid (ViT §3.1, §3.2, App. D.4) and their resampling.

The ViT paper's Table 8 compares four ways to tell the encoder where a patch sits; vitkit has them
and the two the field settled on since, chosen with ``VisionTransformer(pos_embed=...)``:

- ``"none"``: a bag of patches.
- ``"learned_1d"``: one learned D-vector per token in raster order, [class] token included (the
  paper's default, §3.1); resampled bicubically on its grid for another input size (§3.2).
- ``"learned_2d"``: factorised (App. D.4, "2-dimensional positional embedding"): a learned D/2-vector
  per row and one per column, concatenated ``[row_i, col_j]`` for the patch at (i, j)
  (:class:`FactorizedPosEmbed`). For another grid each 1-D table is resampled bicubically.
- ``"sincos_2d"``: fixed sine-cosine of the row and the column index (MAE, He et al. 2022; MoCo v3,
  Chen et al. 2021), D/4 frequencies each (:func:`sincos_2d`); computed for any grid.
- ``"relative"``: App. D.4's relative positional embeddings (:class:`RelativePosition` and
  :class:`RelativePositionTable`). Each 2-D offset ``(dy, dx) = p_query − p_key`` of the grid has a
  learned head_dim-vector in each block (shared by its heads, as in Shaw et al. 2018); an "extra
  attention" of the query with those vectors as keys, ``(q_i · r_{p_i − p_j}) / √d``, is added to the
  content logits before the softmax. The offsets form one table, indexed as a 1-D list of 2-D
  offsets ("1-dimensional relative attention" over all pairs of patches, in the paper's words). The
  (2Gh−1)×(2Gw−1) table is resampled bicubically for another grid (as Swin's bias tables).
- ``"rope_2d"``: axial 2-D rotary embeddings (Su et al., "RoFormer", 2021; Heo et al., "Rotary
  Position Embedding for Vision Transformer", ECCV 2024, RoPE-Axial): q and k are rotated, the first
  half of each head's dimensions by angles of the row index, the second half by the column index,
  with frequencies ``100^(−t/(d/4))`` (base 100, the value of Heo et al.'s axial models); q·k then
  depends on the offset only. Computed for any grid (extrapolation at integer positions, which Heo
  et al. show RoPE handles well).

The [class] token has a position only with ``learned_1d`` (the paper's layout, kept for its weights);
``learned_2d`` and ``sincos_2d`` are added to the patch tokens only (the [class] token is itself a
learned vector, so a learned position would add nothing), and ``relative`` / ``rope_2d`` leave its
logits and its q/k as they are (the usual choice, e.g. Heo et al.'s code).

Everything here computes from the grid size with tensor operations (no branch on a size, no Python
number read from a tensor), so ``torch.export`` with a dynamic H×W traces one program for all sizes;
resampling a learned table to the size it already has is exact (bicubic at scale 1 copies).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

POS_EMBEDS = ("none", "learned_1d", "learned_2d", "sincos_2d", "relative", "rope_2d")
ROPE_BASE = 100.0  # Heo et al. 2024, RoPE-Axial
SINCOS_TEMPERATURE = 10000.0  # MAE / MoCo v3 (the Transformer's)


def check_pos_embed(kind: str, embed_dim: int, num_heads: int) -> None:
    """Raise a ValueError naming the fix when ``kind`` is unknown or does not fit the widths."""
    if kind not in POS_EMBEDS:
        raise ValueError(f"pos_embed={kind!r} is not supported; choose one of {', '.join(POS_EMBEDS)}")
    head_dim = embed_dim // num_heads
    if kind == "learned_2d" and embed_dim % 2:
        raise ValueError(f"pos_embed='learned_2d' needs an even embed_dim (two D/2 halves), got {embed_dim}")
    if kind == "sincos_2d" and embed_dim % 4:
        raise ValueError(f"pos_embed='sincos_2d' needs embed_dim divisible by 4 (sin and cos of rows and "
                         f"columns), got {embed_dim}")
    if kind == "rope_2d" and head_dim % 4:
        raise ValueError(f"pos_embed='rope_2d' needs a head dimension divisible by 4 (rotation pairs for rows "
                         f"and columns), got embed_dim={embed_dim} / num_heads={num_heads} = {head_dim}")


# ------------------------------------------------------------------------------ learned, 1-D
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


def resample_table(table: torch.Tensor, size: Any) -> torch.Tensor:
    """(*S, C) table on a 1-D or 2-D grid of S → (*size, C), bicubic (pixel centres). Exact when
    ``size`` is S (so a model may call it on every forward pass, also with symbolic sizes)."""
    C = table.shape[-1]
    if table.ndim == 2:  # 1-D: bicubic along H of an H×1 image
        x = table.t().reshape(1, C, table.shape[0], 1).float()
        x = F.interpolate(x, size=(size[0], 1), mode="bicubic", align_corners=False)
        return x.reshape(C, size[0]).t().to(table.dtype)  # (n, C)
    x = table.permute(2, 0, 1).unsqueeze(0).float()  # (1, C, S0, S1)
    x = F.interpolate(x, size=(size[0], size[1]), mode="bicubic", align_corners=False)
    return x[0].permute(1, 2, 0).to(table.dtype)  # (n0, n1, C)


# ------------------------------------------------------------------------------ learned, 2-D
class FactorizedPosEmbed(nn.Module):
    """ViT App. D.4's 2-D embedding: rows and columns each learn D/2-vectors; the patch at (i, j)
    gets ``[row_i, col_j]``. ``row`` (Gh, D/2) and ``col`` (Gw, D/2) at the native grid."""

    def __init__(self, grid: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.row = nn.Parameter(torch.zeros(grid[0], dim // 2))
        self.col = nn.Parameter(torch.zeros(grid[1], dim // 2))
        nn.init.trunc_normal_(self.row, std=0.02)
        nn.init.trunc_normal_(self.col, std=0.02)

    def forward(self, Gh: Any, Gw: Any, like: torch.Tensor | None = None) -> torch.Tensor:
        """(1, Gh·Gw, D) for a Gh×Gw grid (the tables resampled when it is not the native one);
        ``like`` is unused (the parameters decide device and dtype)."""
        row = resample_table(self.row, (Gh,))  # (Gh, D/2)
        col = resample_table(self.col, (Gw,))  # (Gw, D/2)
        half = row.shape[-1]
        grid = torch.cat([row[:, None].expand(-1, Gw, -1), col[None].expand(Gh, -1, -1)], dim=-1)
        return grid.reshape(1, Gh * Gw, 2 * half)

    @torch.no_grad()
    def set_grid(self, grid: tuple[int, int]) -> None:
        """Resample the tables in place to a new native grid (``set_input_size``)."""
        self.row = nn.Parameter(resample_table(self.row.data, (grid[0],)).contiguous())
        self.col = nn.Parameter(resample_table(self.col.data, (grid[1],)).contiguous())


# ------------------------------------------------------------------------------ fixed sine-cosine
def sincos_2d(Gh: Any, Gw: Any, dim: int, temperature: float = SINCOS_TEMPERATURE,
              device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(Gh·Gw, dim) fixed embedding ``[sin(i·ω), cos(i·ω), sin(j·ω), cos(j·ω)]`` of row i and column j,
    ``ω_t = temperature^(−t/(dim/4))`` (MAE, MoCo v3: D/4 frequencies per axis and function)."""
    quarter = dim // 4
    omega = temperature ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)  # (D/4,)
    rows = torch.arange(Gh, device=device, dtype=torch.float32)[:, None] * omega  # (Gh, D/4)
    cols = torch.arange(Gw, device=device, dtype=torch.float32)[:, None] * omega  # (Gw, D/4)
    r = torch.cat([rows.sin(), rows.cos()], dim=-1)[:, None].expand(-1, Gw, -1)  # (Gh, Gw, D/2)
    c = torch.cat([cols.sin(), cols.cos()], dim=-1)[None].expand(Gh, -1, -1)  # (Gh, Gw, D/2)
    return torch.cat([r, c], dim=-1).reshape(Gh * Gw, 4 * quarter).to(dtype)


class SinCosPosEmbed(nn.Module):
    """:func:`sincos_2d` as a module: no parameters, computed for the grid it is asked for."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, Gh: Any, Gw: Any, like: torch.Tensor | None = None) -> torch.Tensor:
        device, dtype = (like.device, like.dtype) if like is not None else (None, torch.float32)
        return sincos_2d(Gh, Gw, self.dim, device=device, dtype=dtype)[None]  # (1, Gh·Gw, D)

    def set_grid(self, grid: tuple[int, int]) -> None:
        """Nothing to resample: the embedding is a function of the grid."""

    def extra_repr(self) -> str:
        return f"dim={self.dim}, temperature={SINCOS_TEMPERATURE:g}"


# ------------------------------------------------------------------------------ inside attention
# A model with position inside attention (relative, rope_2d) builds one of the records below per
# forward pass, for the grid of that input, and hands it to every Attention as ``pos``; the
# Attention calls ``pos(attn, q, k, bias)`` on its (B, heads, N, head_dim) q and k and uses the
# q, k and logit bias that come back.
def grid_offsets(Gh: Any, Gw: Any, device: torch.device | None = None) -> torch.Tensor:
    """(Gh·Gw, Gh·Gw) index of the offset ``p_query − p_key`` in a (2Gh−1)×(2Gw−1) raster of offsets."""
    ys = torch.arange(Gh, device=device)[:, None].expand(-1, Gw).reshape(-1)  # (N,) row of each patch
    xs = torch.arange(Gw, device=device)[None].expand(Gh, -1).reshape(-1)  # (N,) column of each patch
    dy = ys[:, None] - ys[None] + (Gh - 1)  # (N, N) in 0 … 2Gh−2
    dx = xs[:, None] - xs[None] + (Gw - 1)
    return dy * (2 * Gw - 1) + dx


class RelativePositionTable(nn.Module):
    """One block's learned relative embeddings: ``weight`` (2Gh−1, 2Gw−1, head_dim), an embedding per
    2-D offset at the native grid (ViT App. D.4)."""

    def __init__(self, grid: tuple[int, int], head_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2 * grid[0] - 1, 2 * grid[1] - 1, head_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def table(self, Gh: Any, Gw: Any) -> torch.Tensor:
        """((2Gh−1)·(2Gw−1), head_dim) for a Gh×Gw grid (bicubic on the offsets when not native)."""
        t = resample_table(self.weight, (2 * Gh - 1, 2 * Gw - 1))
        return t.reshape((2 * Gh - 1) * (2 * Gw - 1), t.shape[-1])

    @torch.no_grad()
    def set_grid(self, grid: tuple[int, int]) -> None:
        self.weight = nn.Parameter(resample_table(self.weight.data, (2 * grid[0] - 1, 2 * grid[1] - 1)).contiguous())


@dataclass
class RelativePosition:
    """The per-input record of ``pos_embed="relative"``: which offset each (query, key) pair has.
    Adds ``(q_i · r_{p_i − p_j}) / √head_dim`` to the logits of patch pairs; rows and columns of the
    [class] token get nothing."""

    index: torch.Tensor  # (Ng, Ng) from grid_offsets
    grid: tuple[Any, Any]
    num_prefix_tokens: int

    def __call__(self, attn: nn.Module, q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self.num_prefix_tokens
        r = attn.rel_pos.table(*self.grid).to(q.dtype)[self.index]  # (Ng, Ng, hd): r_{p_i − p_j}
        # the "extra attention" with the offsets' embeddings as keys: one (B·h, hd) × (hd, Ng) product
        # per query position (cheaper than scoring every query against all (2Gh−1)(2Gw−1) offsets)
        rel = torch.einsum("bhid,ijd->bhij", q[:, :, p:] * q.shape[-1] ** -0.5, r)  # (B, h, Ng, Ng)
        rel = F.pad(rel, (p, 0, p, 0))  # (B, h, N, N), zeros for the [class] token
        return q, k, rel if bias is None else bias + rel


def rope_2d(Gh: Any, Gw: Any, head_dim: int, base: float = ROPE_BASE,
            device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (Gh·Gw, head_dim): axial RoPE angles, the first half of the dimensions by the
    row index, the second by the column index, frequencies ``base^(−t/(head_dim/4))``; within each
    half, dimension t pairs with t + head_dim/4 (the "rotate half" layout)."""
    quarter = head_dim // 4
    freqs = base ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)  # (hd/4,)
    rows = torch.arange(Gh, device=device, dtype=torch.float32)[:, None] * freqs  # (Gh, hd/4)
    cols = torch.arange(Gw, device=device, dtype=torch.float32)[:, None] * freqs  # (Gw, hd/4)
    angles = torch.cat([rows[:, None].expand(-1, Gw, -1).repeat(1, 1, 2),
                        cols[None].expand(Gh, -1, -1).repeat(1, 1, 2)], dim=-1)  # (Gh, Gw, hd)
    angles = angles.reshape(Gh * Gw, 4 * quarter)
    return angles.cos(), angles.sin()


@dataclass
class Rotary2d:
    """The per-input record of ``pos_embed="rope_2d"``: rotate the patch tokens' q and k by
    :func:`rope_2d`'s angles; the [class] token's rows have angle 0 (cos 1, sin 0: unchanged).
    ``sin`` carries the rotation's signs (−sin where a pair's first element takes its partner), so
    a rotation is ``x·cos + swap(x)·sin``: three elementwise kernels on the whole sequence."""

    cos: torch.Tensor  # (N, hd), prefix rows 1
    sin: torch.Tensor  # (N, hd), signed, prefix rows 0

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        quarter = x.shape[-1] // 4
        swapped = x.unflatten(-1, (2, 2, quarter)).flip(-2).flatten(-3)  # per axis half [a, b] → [b, a]
        return torch.addcmul(x * self.cos.to(x.dtype), swapped, self.sin.to(x.dtype))

    def __call__(self, attn: nn.Module, q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.rotate(q), self.rotate(k), bias

    @classmethod
    def for_grid(cls, Gh: Any, Gw: Any, head_dim: int, num_prefix_tokens: int,
                 device: torch.device | None = None) -> "Rotary2d":
        cos, sin = rope_2d(Gh, Gw, head_dim, device=device)  # (Ng, hd)
        quarter = head_dim // 4
        sign = torch.ones(2, 2, quarter, device=device)
        sign[:, 0] = -1  # a' = a·cos − b·sin, b' = b·cos + a·sin
        sin = sin * sign.reshape(-1)
        p = num_prefix_tokens
        return cls(F.pad(cos, (0, 0, p, 0), value=1.0), F.pad(sin, (0, 0, p, 0)))


def attention_position(kind: str, Gh: Any, Gw: Any, head_dim: int, num_prefix_tokens: int,
                       device: torch.device) -> RelativePosition | Rotary2d | None:
    """The record that blocks pass to their attention for a Gh×Gw input (None: position is not
    inside attention for ``kind``)."""
    if kind == "relative":
        return RelativePosition(grid_offsets(Gh, Gw, device), (Gh, Gw), num_prefix_tokens)
    if kind == "rope_2d":
        return Rotary2d.for_grid(Gh, Gw, head_dim, num_prefix_tokens, device)
    return None

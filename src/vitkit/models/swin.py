"""Swin Transformer (Liu et al., ICCV 2021): hierarchical stages of shifted-window attention.

4×4 patches are embedded to C channels; four stages follow, each (after the first) opened by
patch merging (2×2 neighbours concatenated → LN → linear 4C→2C). Blocks alternate regular (W-MSA)
and shifted (SW-MSA) windows of M×M tokens with a learned relative position bias (§3.2).

Feature maps stay (B, H, W, C) throughout. Any input size works: maps are padded to window
multiples *before* the cyclic shift and masked (see :mod:`vitkit.layers.window`). This file is the
reference computation; :mod:`vitkit.models.swin_fast` holds the faster ways to the same numbers
(window-ordered stream, chunked attention, caches), taken where ``vitkit.fast_paths`` allows.

Layout: attention → block → patch merging → stage → model → variant table.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import DropPath, Mlp, PatchEmbed
from ..layers.attention import attention, project_qkv
from ..layers.fastpath import may_take, symbolic
from ..layers.patch_embed import to_2tuple
from ..layers.window import (
    MASK_VALUE,
    ceil_div,
    gather_roll,
    padded,
    relative_position_index,
    resample_relative_bias_table,
    shift_window_mask,
    window_geometry,
    window_partition,
    window_reverse,
)
from ..layers.resample import embed_bias_table, resample_bias_table, resample_grid_embed
from ..registry import register
from . import swin_fast
from .base import AttentionLayer, ModelBase
from .vit import _resolve_indices

IMAGENET_PREPROCESS = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                           interpolation="bicubic", crop_pct=0.9)


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a relative position bias B (Swin Eq. 4).

    The bias table has (2M−1)² rows for the configured window M; smaller effective windows (small
    stages) index the same table. Bias and shift/pad mask are combined into one additive mask
    (kept between inference calls by :mod:`~vitkit.models.swin_fast`), and the attention runs in
    the fused kernel (``F.scaled_dot_product_attention``). When the bias needs its gradient, an
    explicit softmax takes it, broadcast over the batch without a copy.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.capture = False  # analysis: keep the next forward's maps in ``attn_map``
        self.attn_map: torch.Tensor | None = None

    def set_window_size(self, window_size: int) -> None:
        """Resample the bias table to a new window (bicubic on the offset grid)."""
        table = resample_relative_bias_table(self.relative_position_bias_table.data, window_size)
        self.relative_position_bias_table = nn.Parameter(table)
        self.window_size = window_size
        swin_fast.clear_caches(self)

    def relative_bias(self, wh: int, ww: int) -> torch.Tensor:
        """(heads, N, N) relative position bias for a wh×ww window."""
        table = self.relative_position_bias_table
        idx = swin_fast.relative_index(self, wh, ww, lambda: relative_position_index(wh, ww, self.window_size).to(table.device))
        N = wh * ww
        return table[idx.view(-1)].view(N, N, -1).permute(2, 0, 1)  # (heads, N, N)

    def additive_mask(self, wh: int, ww: int, mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """Bias plus shift/pad mask as one additive mask in ``dtype``: (1, heads, N, N), or
        (nW, heads, N, N) with −inf where ``mask`` forbids a pair."""
        cached = swin_fast.cached_mask(self, wh, ww, mask, dtype)
        if cached is not None:
            return cached
        bias = self.relative_bias(wh, ww).to(dtype).unsqueeze(0)  # (1, heads, N, N)
        if mask is not None:
            bias = bias.masked_fill(~mask.unsqueeze(1), MASK_VALUE)  # (nW, heads, N, N)
        return swin_fast.keep_mask(self, wh, ww, mask, dtype, bias)

    def forward(self, x: torch.Tensor, wh: int, ww: int, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B * nW, N, C) windows; mask: boolean (nW, N, N) or None."""
        return self.proj_drop(self.proj(self.heads(x, wh, ww, mask)))

    def heads(self, x: torch.Tensor, wh: int, ww: int, mask: torch.Tensor | None, reuse: bool = False) -> torch.Tensor:
        """Everything before the output projection: (B * nW, N, C). ``reuse``: see
        :func:`vitkit.layers.attention.project_qkv`."""
        BnW, N, C = x.shape
        h, hd = self.num_heads, self.head_dim
        qkv = project_qkv(self.qkv, x, reuse).view(BnW, N, 3, h, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*nW, heads, N, hd), views
        bias = self.additive_mask(wh, ww, mask, q.dtype)  # (nW or 1, heads, N, N)
        nW = bias.shape[0]
        dropout_p = self.attn_drop if self.training else 0.0
        if self.capture or bias.requires_grad or torch.compiler.is_compiling():
            # explicit softmax on (B, nW, heads, N, hd): the mask broadcasts over B without a copy.
            # Traced too: inductor fuses mask + softmax there (Swin-T b8 CPU, compiled with freezing:
            # 0.96× compiled timm this way, 0.85× through the fused kernel with a batched mask)
            q, k, v = (t.view(BnW // nW, nW, h, N, hd) for t in (q, k, v))
            out, probs = attention(q, k, v, bias, dropout_p=dropout_p, need_weights=True)
            if self.capture:
                self.attn_map = probs.detach().reshape(BnW, h, N, N)
            out = out.reshape(BnW, h, N, hd)
        elif swin_fast.chunked_attention_applies(self):
            return swin_fast.attention_in_chunks(self, q, k, v, bias).view(BnW, N, C)
        else:
            if nW > 1:  # the fused kernel takes a 4-D mask (a 3-D or 5-D one sends it to a slow path)
                bias = swin_fast.batched_mask(self, bias, BnW)
            out, _ = attention(q, k, v, bias, dropout_p=dropout_p)
        return out.transpose(1, 2).reshape(BnW, N, C)  # a view when the kernel wrote (B*nW, N, heads, hd)


class SwinBlock(nn.Module):
    """LN → (shifted) window attention → residual; LN → MLP → residual (Swin Eq. 3)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shifted: bool, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act="gelu", drop=drop)

    def forward(self, x: torch.Tensor, masks: dict[bool, torch.Tensor | None]) -> torch.Tensor:
        B, H, W, C = x.shape
        wh, ww, sh, sw = window_geometry(H, W, self.attn.window_size, self.shifted)
        Hp, Wp = padded(H, wh), padded(W, ww)
        traced = symbolic(H, W)  # no branch on a symbolic size: pad, shift and crop by what may be 0
        y = self.norm1(x)
        if traced or Hp != H or Wp != W:
            y = F.pad(y, (0, 0, 0, Wp - W, 0, Hp - H))  # pad first, then shift (the correct order)
        if traced:
            y = gather_roll(y, (-sh, -sw), (1, 2))
        elif sh or sw:
            y = torch.roll(y, shifts=(-sh, -sw), dims=(1, 2))
        y = window_partition(y, wh, ww)  # (B*nW, wh*ww, C)
        y = self.attn(y, wh, ww, masks[self.shifted])
        y = window_reverse(y, wh, ww, Hp, Wp)  # (B, Hp, Wp, C)
        if traced:
            y = gather_roll(y, (sh, sw), (1, 2), keep=(H, W))
        else:
            if sh or sw:
                y = torch.roll(y, shifts=(sh, sw), dims=(1, 2))
            if Hp != H or Wp != W:
                y = y[:, :H, :W]
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """(B, H, W, C) → (B, ⌈H/2⌉, ⌈W/2⌉, 2C): 2×2 neighbours concatenated, LN, linear without bias."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        Hh, Wh = ceil_div(H, 2), ceil_div(W, 2)
        if symbolic(H, W) or H % 2 or W % 2:  # traced: pad by what may be 0, no branch on the size
            x = F.pad(x, (0, 0, 0, 2 * Wh - W, 0, 2 * Hh - H))
        # order (x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]) as in the official weights
        x = x.view(B, Hh, 2, Wh, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Patch merging (stages 2–4), then blocks alternating regular and shifted windows, each on the
    (B, H, W, C) map. Where :func:`~vitkit.layers.fastpath.may_take` allows, the blocks run on a
    window-ordered token stream instead (:func:`vitkit.models.swin_fast.window_stream`, the same
    result); a hook on any block or submodule of one sees the maps of this reference path.
    """

    def __init__(self, dim: int, out_dim: int, depth: int, num_heads: int, window_size: int,
                 downsample: bool, drop_path: Sequence[float], **block_kwargs: Any) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim) if downsample else nn.Identity()
        self.blocks = nn.ModuleList([
            SwinBlock(out_dim, num_heads, window_size, shifted=(i % 2 == 1), drop_path=drop_path[i], **block_kwargs)
            for i in range(depth)
        ])
        self.grad_checkpointing = False

    def _run(self, fn: Any, *args: Any) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        B, H, W, C = x.shape
        window = self.blocks[0].attn.window_size
        geo = {s: window_geometry(H, W, window, s) for s in (False, True)}
        make = shift_window_mask if may_take() else shift_window_mask.__wrapped__  # no lru_cache in traces
        masks = {s: make(H, W, *geo[s], device=x.device) for s in (False, True)}  # shared by the blocks
        if swin_fast.stream_applies(self, H, W):
            return swin_fast.window_stream(self, x, geo, masks)
        for blk in self.blocks:
            x = self._run(blk, x, masks)
        return x


class SwinTransformer(ModelBase):
    """Swin classifier; ``ape`` adds the absolute position embedding of the paper's ablation."""

    feature_pyramid = "hierarchical"

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        ape: bool = False,
    ) -> None:
        super().__init__()
        if window_size < 1:  # 0 divides by zero in the window partition; negative sizes index backwards
            raise ValueError(f"window_size={window_size}: the attention window must be a positive number of patches, "
                             "e.g. 7 (Swin at 224 px) or 4 (at 32 px)")
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} must have the same length")
        self.num_classes = num_classes
        self.img_size = to_2tuple(img_size)
        self.patch_size = patch_size
        self.window_size = window_size
        self.num_stages = len(depths)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm=True, pad=True)
        grid = (-(-self.img_size[0] // patch_size), -(-self.img_size[1] // patch_size))
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim)) if ape else None
        if ape:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)

        n_blocks = sum(depths)
        dpr = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]  # rises linearly
        dims = [embed_dim * 2**i for i in range(self.num_stages)]
        self.stages = nn.ModuleList()
        for s in range(self.num_stages):
            first = sum(depths[:s])
            self.stages.append(SwinStage(
                dims[max(s - 1, 0)], dims[s], depths[s], num_heads[s], window_size, downsample=s > 0,
                drop_path=dpr[first: first + depths[s]], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                drop=drop_rate, attn_drop=attn_drop_rate))
        self.num_features = dims[-1]
        self.norm = nn.LayerNorm(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=dims[s], reduction=patch_size * 2**s, module=f"stages.{s}")
                             for s in range(self.num_stages)]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names (substrings) of parameters trained without weight decay (Swin recipe)."""
        return {"absolute_pos_embed", "relative_position_bias_table"}

    # ----------------------------------------------------------------------- protocol (models.base)
    def transformer_blocks(self) -> list[nn.Module]:
        return [blk for stage in self.stages for blk in stage.blocks]

    def layer_id(self, name: str) -> int:
        """Blocks counted across stages; a stage's patch merging sits just below its first block."""
        if name.startswith(("patch_embed", "absolute_pos_embed")):
            return 0
        depths = [len(s.blocks) for s in self.stages]
        m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", name)
        if m:
            return sum(depths[: int(m.group(1))]) + int(m.group(2)) + 1
        m = re.match(r"stages\.(\d+)\.", name)
        return sum(depths[: int(m.group(1))]) if m else sum(depths) + 1

    def attention_layers(self) -> list[AttentionLayer]:
        out: list[AttentionLayer] = []
        for s, stage in enumerate(self.stages):
            for b, blk in enumerate(stage.blocks):
                out.append(AttentionLayer(len(out), f"stages.{s}.blocks.{b}.attn", blk.attn, blk, s,
                                          self.patch_size * 2**s, 0, True))
        return out

    def stage_window(self, stage: int) -> int:
        """The attention window stage ``stage`` uses at the model's own input size: smaller than the
        configured one when the stage's map is (Swin §3.2)."""
        h, w = (math.ceil(n / self.patch_size) for n in self.img_size)
        for _ in range(stage):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return min(self.window_size, h, w)

    def fit_tensor(self, key: str, value: torch.Tensor, interpolation: str = "bicubic"
                   ) -> tuple[torch.Tensor, str] | None:
        if key.endswith("relative_position_bias_table") and value.ndim == 2:
            attn = self.get_submodule(key.rsplit(".", 1)[0])
            if value.shape[1] != attn.num_heads:
                return None
            window, side = attn.window_size, int(round(value.shape[0] ** 0.5))
            m = re.match(r"stages\.(\d+)\.", key)
            if m and side == 2 * self.stage_window(int(m.group(1))) - 1 < 2 * window - 1:
                return (embed_bias_table(value, window),  # a stage smaller than the window: exact
                        f"the file's table covers the stage's {(side + 1) // 2}-wide window; placed at the centre")
            return resample_bias_table(value, window), f"window {(side + 1) // 2} resampled to {window} (bicubic)"
        if key == "absolute_pos_embed" and self.absolute_pos_embed is not None and value.ndim == 4 \
                and value.shape[-1] == self.absolute_pos_embed.shape[-1]:
            return resample_grid_embed(value, tuple(self.absolute_pos_embed.shape[1:3])), "grid resampled (bicubic)"
        return None

    def position_embedding_grid(self) -> torch.Tensor:
        if self.absolute_pos_embed is None:
            raise ValueError("this Swin model has no absolute position embedding (it uses relative position "
                             "biases only); build it with ape=True to analyse one")
        return self.absolute_pos_embed.detach()[0]

    def pixel_patch_projection(self) -> nn.Conv2d:
        return self.patch_embed.proj

    def export_size_oblivious(self) -> bool:
        return True  # one window or several along a side (layers.window's traced geometry)

    @classmethod
    def config_from_state_dict(cls, state: Any) -> dict[str, Any] | None:
        keys = list(state)
        if "patch_embed.proj.weight" not in state or not any(k.startswith("stages.") for k in keys):
            return None

        def count(pattern: str) -> int:
            found = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
            return max(found) + 1 if found else 0

        proj = state["patch_embed.proj.weight"]
        n_stages = count(r"stages\.(\d+)\.")
        kw: dict[str, Any] = dict(embed_dim=int(proj.shape[0]), patch_size=int(proj.shape[-1]),
                                  depths=tuple(count(rf"stages\.{s}\.blocks\.(\d+)\.") for s in range(n_stages)))
        head = state.get("head.weight")
        info: dict[str, Any] = dict(kwargs=kw, num_classes=int(head.shape[0]) if head is not None else 0)
        table = state.get("stages.0.blocks.0.attn.relative_position_bias_table")
        if table is not None:
            info["window_size"] = (int(round(table.shape[0] ** 0.5)) + 1) // 2
            kw["num_heads"] = tuple(int(state[f"stages.{s}.blocks.0.attn.relative_position_bias_table"].shape[1])
                                    for s in range(n_stages))
        return info

    @classmethod
    def row_fits(cls, row: dict[str, Any], info: dict[str, Any]) -> bool | None:
        """See :meth:`VisionTransformer.row_fits` (True: the file's own window)."""
        kw = info["kwargs"]
        if (row.get("embed_dim") != kw["embed_dim"] or tuple(row.get("depths", ())) != kw["depths"]
                or row.get("patch_size") != kw["patch_size"]):
            return None
        return row.get("window_size") == info.get("window_size")

    @classmethod
    def describe_config(cls, info: dict[str, Any]) -> str:
        kw = info["kwargs"]
        return (f"a Swin with embed_dim={kw.get('embed_dim')}, depths={kw.get('depths')}, "
                f"window {info.get('window_size')}, {info.get('num_classes')} classes")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head with a zero-initialised linear layer for fine-tuning."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"Swin pools by averaging; global_pool={global_pool!r} is not supported")
        self.num_classes = num_classes
        self._record(num_classes=num_classes)
        if num_classes > 0:
            p = self.norm.weight
            self.head = nn.Linear(self.num_features, num_classes, device=p.device, dtype=p.dtype)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:
            self.head = nn.Identity()

    @torch.no_grad()
    def set_input_size(self, img_size: int | tuple[int, int] | None = None, window_size: int | None = None) -> None:
        """Change the native input size and/or the attention window (bias tables are resampled
        bicubically, the absolute position embedding bilinearly where present)."""
        if img_size is not None:
            self.img_size = to_2tuple(img_size)
            self._record(img_size=img_size if isinstance(img_size, int) else tuple(img_size))
            if self.absolute_pos_embed is not None:
                grid = (-(-self.img_size[0] // self.patch_size), -(-self.img_size[1] // self.patch_size))
                pe = self.absolute_pos_embed.data.permute(0, 3, 1, 2)
                pe = F.interpolate(pe, size=grid, mode="bicubic", align_corners=False)
                self.absolute_pos_embed = nn.Parameter(pe.permute(0, 2, 3, 1).contiguous())
        if window_size is not None:
            self.window_size = window_size
            self._record(window_size=window_size)
            for stage in self.stages:
                for blk in stage.blocks:
                    blk.attn.set_window_size(window_size)
        if img_size is not None:
            self.pretrained_cfg["input_size"] = (self.pretrained_cfg["input_size"][0], *self.img_size)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) image batch, got shape {tuple(x.shape)}")
        x = self.patch_embed(x)  # (B, H/4, W/4, C)
        if self.absolute_pos_embed is not None:
            pe = self.absolute_pos_embed
            if symbolic(*x.shape[1:3]) or pe.shape[1:3] != x.shape[1:3]:  # traced: always (identity at the own size)
                pe = F.interpolate(pe.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bicubic",
                                   align_corners=False).permute(0, 2, 3, 1)
            x = x + pe
        return self.pos_drop(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → normalised last-stage map (B, H/32, W/32, 8C)."""
        x = self._embed(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(x.mean(dim=(1, 2)))  # global average pool → (B, 8C)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        output_fmt: str = "NCHW",
        norm: bool = False,
    ) -> list[torch.Tensor]:
        """Outputs of chosen stages (``indices``: an int n for the last n, or stage indices;
        ``None`` for all): (B, C_s, H_s, W_s) maps with ``"NCHW"``, (B, H_s, W_s, C_s) with
        ``"NHWC"``. ``norm`` applies the final LayerNorm to the last stage's map."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt={output_fmt!r} is not supported; choose 'NCHW' or 'NHWC'")
        take = _resolve_indices(indices, self.num_stages)
        x = self._embed(x)
        outs = []
        for s, stage in enumerate(self.stages[: max(take) + 1]):
            x = stage(x)
            if s in take:
                y = self.norm(x) if norm and s == self.num_stages - 1 else x
                outs.append(y.permute(0, 3, 1, 2) if output_fmt == "NCHW" else y)
        return outs

    def forward_features_masked(self, x: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
        """SimMIM's encoder pass (Xie et al. 2022 §3.1): the patch tokens where ``mask`` (B, H/p, W/p)
        is 1 replaced by ``mask_token`` (1, 1, C) right after the patch embedding, then the stages as
        :meth:`forward_features` runs them; returns the normalised last-stage map."""
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) image batch, got shape {tuple(x.shape)}")
        t = self.patch_embed(x)  # (B, H/p, W/p, C)
        w = mask[..., None].to(t.dtype)
        t = t * (1 - w) + mask_token.to(t.dtype) * w
        if self.absolute_pos_embed is not None:
            pe = self.absolute_pos_embed
            if pe.shape[1:3] != t.shape[1:3]:
                pe = F.interpolate(pe.permute(0, 3, 1, 2), size=t.shape[1:3], mode="bicubic",
                                   align_corners=False).permute(0, 2, 3, 1)
            t = t + pe
        t = self.pos_drop(t)
        for stage in self.stages:
            t = stage(t)
        return self.norm(t)


# ------------------------------------------------------------------------------ variant table
# Swin paper §3.3: C, layer numbers and heads per stage.
SWIN_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    "large": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}
SWIN_SMALL_IMAGE = {  # 32×32 inputs (CIFAR): 2×2 patches, window 4 → stages of 16, 8, 4, 2 tokens a side
    "swin_micro_patch2_window4_32": dict(img_size=32, patch_size=2, window_size=4, num_classes=10,
                                         embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
    "swin_tiny_patch2_window4_32": dict(img_size=32, patch_size=2, window_size=4, num_classes=10,
                                        **SWIN_SIZES["tiny"]),
}


def _register_all() -> None:
    for size, row in SWIN_SIZES.items():
        for window, res in ((7, 224), (12, 384)):
            register(f"swin_{size}_patch4_window{window}_{res}", SwinTransformer,
                     dict(img_size=res, patch_size=4, window_size=window, **row),
                     dict(IMAGENET_PREPROCESS, input_size=(3, res, res)), family="swin")
    for name, row in SWIN_SMALL_IMAGE.items():
        register(name, SwinTransformer, row,
                 dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), interpolation="bilinear",
                      crop_pct=1.0, input_size=(3, 32, 32)), family="swin")


_register_all()

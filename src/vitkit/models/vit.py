"""Vision Transformer (Dosovitskiy et al., ICLR 2021), plain and hybrid.

An image is cut into P×P patches, each linearly projected to D (a stride-P convolution), a learned
[class] token is prepended, learned 1-D position embeddings are added (or another kind of position,
``pos_embed=``: :mod:`vitkit.layers.pos_embed`), and L pre-norm Transformer
blocks follow; the head reads the [class] token (or the mean of the tokens, the paper's GAP
ablation). The hybrid variant feeds the feature map of a ResNet (BiT) stem as 1×1 patches (§3.1).
This file is the reference computation; :mod:`vitkit.models.vit_fast` holds the faster ways to the
same numbers (in-place residuals, chunked inference, class-token tail), taken where
``vitkit.fast_paths`` allows.

Layout: helpers → Block → VisionTransformer → variant table.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..layers import Attention, DropPath, LayerScale, Mlp, PatchEmbed, resample_abs_pos_embed
from ..layers.fastpath import symbolic
from ..layers.patch_embed import to_2tuple
from ..layers.pos_embed import (FactorizedPosEmbed, RelativePositionTable, SinCosPosEmbed, attention_position,
                                check_pos_embed, resample_table)
from ..layers.resample import resample_pos_embed, square_grid
from ..registry import register
from . import vit_fast
from .base import AttentionLayer, ModelBase
from .resnet_stem import ResNetStem

VIT_PREPROCESS = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic", crop_pct=0.9)


class Block(nn.Module):
    """Pre-norm Transformer encoder block (ViT Eq. 2–3): x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
        act: str = "gelu",
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, act=act, drop=drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, inplace: bool = False, pos: Any = None) -> torch.Tensor:
        """``inplace`` (the caller owns ``x``): where the fast paths allow, the output projections
        accumulate into ``x`` itself (:func:`vitkit.models.vit_fast.block_inplace`), same sums.
        ``pos``: position inside attention (relative, rope_2d), passed to :class:`Attention`."""
        if inplace and pos is None and vit_fast.fusable(self):
            return vit_fast.block_inplace(self, x)
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), pos=pos)))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return x


class VisionTransformer(ModelBase):
    """ViT classifier.

    Args mirror the paper's knobs: ``patch_size`` P, ``embed_dim`` D, ``depth`` L, ``num_heads``,
    ``mlp_dim``; ``global_pool`` ``"token"`` (the [class] token) or ``"avg"`` (GAP, no class
    token); ``representation_size`` adds the pre-training head's tanh ``pre_logits`` layer;
    ``act`` ``"gelu"`` (exact) or ``"gelu_tanh"`` (Flax's default, used by the official JAX code);
    ``init_values`` turns on LayerScale; ``stem_depths`` makes it a hybrid (ResNet-BiT stem whose
    feature map is cut into ``patch_size``×``patch_size`` patches, 1 in the paper), ``stem_numerics``
    ``"timm"`` or ``"jax"`` its weight-standardisation and GroupNorm epsilons (see
    :mod:`vitkit.models.resnet_stem`). ``pos_embed`` how tokens learn where they are: ``"learned_1d"``
    (the paper's, default), ``"none"``, ``"learned_2d"``, ``"sincos_2d"``, ``"relative"`` or
    ``"rope_2d"`` (ViT App. D.4 and later work; :mod:`vitkit.layers.pos_embed`).

    Any input size divisible by the patch stride works: learned position embeddings are resampled on
    the fly (bicubic, class token kept apart) when the grid differs from ``img_size``'s, the others
    are computed for the grid.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_dim: int | None = None,
        qkv_bias: bool = True,
        representation_size: int | None = None,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float | None = None,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        stem_depths: Sequence[int] | None = None,
        stem_numerics: str = "timm",
        pos_embed: str = "learned_1d",
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool={global_pool!r} is not supported; choose 'token' or 'avg'")
        check_pos_embed(pos_embed, embed_dim, num_heads)
        self.pos_embed_kind = pos_embed
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.embed_dim = self.num_features = embed_dim
        self.num_prefix_tokens = 1 if global_pool == "token" else 0
        self.grad_checkpointing = False

        if stem_depths:
            self.stem = ResNetStem(in_chans=in_chans, depths=tuple(stem_depths), numerics=stem_numerics)
            stem_chans, stem_stride = self.stem.out_channels, self.stem.stride
        else:
            self.stem = None
            stem_chans, stem_stride = in_chans, 1
        self.patch_embed = PatchEmbed(patch_size, stem_chans, embed_dim)
        self.patch_size = patch_size
        self.stride = patch_size * stem_stride  # input pixels per token along each side
        self.img_size = to_2tuple(img_size)
        self._check_size(self.img_size)
        self.grid_size = (self.img_size[0] // self.stride, self.img_size[1] // self.stride)

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if self.num_prefix_tokens else None
        num_pos = self.grid_size[0] * self.grid_size[1] + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, num_pos, embed_dim)) if pos_embed == "learned_1d" else None
        # the 2-D kinds: on the patch grid only (the [class] token gets none, see layers.pos_embed)
        self.pos_embed_2d = (FactorizedPosEmbed(self.grid_size, embed_dim) if pos_embed == "learned_2d" else
                             SinCosPosEmbed(embed_dim) if pos_embed == "sincos_2d" else None)
        self.pos_drop = nn.Dropout(pos_drop_rate)

        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth rises linearly
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_dim or 4 * embed_dim, qkv_bias=qkv_bias, drop=drop_rate,
                  attn_drop=attn_drop_rate, drop_path=dpr[i], init_values=init_values, act=act,
                  norm_eps=norm_eps)
            for i in range(depth)
        ])
        self.head_dim = embed_dim // num_heads
        if pos_embed == "relative":  # a learned embedding per 2-D offset in each block (App. D.4)
            for blk in self.blocks:
                blk.attn.rel_pos = RelativePositionTable(self.grid_size, self.head_dim)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        if representation_size:
            self.pre_logits = nn.Sequential()
            self.pre_logits.add_module("fc", nn.Linear(embed_dim, representation_size))
            self.pre_logits.add_module("act", nn.Tanh())
            self.head_in_features = representation_size
        else:
            self.pre_logits = nn.Identity()
            self.head_in_features = embed_dim
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.head_in_features, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [
            dict(num_chs=embed_dim, reduction=self.stride, module=f"blocks.{i}") for i in range(depth)
        ]
        self.init_weights()

    # ----------------------------------------------------------------------------------- setup
    def init_weights(self) -> None:
        """Truncated-normal(0.02) linear weights and position embeddings, zero biases."""
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # the patch projection is a linear map of the flattened patch (LeCun normal, as in JAX)
        w = self.patch_embed.proj.weight
        nn.init.trunc_normal_(w, std=(1.0 / w[0].numel()) ** 0.5)
        nn.init.zeros_(self.patch_embed.proj.bias)

    def _check_size(self, size: tuple[int, int]) -> None:
        if size[0] % self.stride or size[1] % self.stride:
            raise ValueError(
                f"image size {size[0]}x{size[1]} is not divisible by the model's patch stride "
                f"{self.stride}; use a multiple of {self.stride}"
            )

    # ----------------------------------------------------------------------- protocol (models.base)
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "rel_pos"}

    def transformer_blocks(self) -> list[nn.Module]:
        return list(self.blocks)

    def layer_id(self, name: str) -> int:
        if name.startswith(("cls_token", "pos_embed", "patch_embed", "stem")):
            return 0
        m = re.match(r"blocks\.(\d+)\.", name)
        return int(m.group(1)) + 1 if m else len(self.blocks) + 1

    def attention_layers(self) -> list[AttentionLayer]:
        return [AttentionLayer(i, f"blocks.{i}.attn", blk.attn, blk, 0, self.stride, self.num_prefix_tokens, False)
                for i, blk in enumerate(self.blocks)]

    def fit_tensor(self, key: str, value: torch.Tensor, interpolation: str = "bicubic"
                   ) -> tuple[torch.Tensor, str] | None:
        if key == "pos_embed" and value.ndim == 3 and value.shape[-1] == self.pos_embed.shape[-1]:
            old = square_grid(value.shape[1] - self.num_prefix_tokens)
            new = resample_pos_embed(value, tuple(self.grid_size), old, self.num_prefix_tokens, interpolation)
            return new, f"{old[0]}x{old[1]} grid resampled to {self.grid_size[0]}x{self.grid_size[1]} ({interpolation})"
        Gh, Gw = self.grid_size
        if key in ("pos_embed_2d.row", "pos_embed_2d.col") and isinstance(self.pos_embed_2d, FactorizedPosEmbed) \
                and value.ndim == 2:
            n = Gh if key.endswith("row") else Gw
            return resample_table(value, (n,)), f"{value.shape[0]} entries resampled to {n} (bicubic)"
        if re.fullmatch(r"blocks\.\d+\.attn\.rel_pos\.weight", key) and value.ndim == 3 \
                and self.pos_embed_kind == "relative":
            new = resample_table(value, (2 * Gh - 1, 2 * Gw - 1))
            return new, f"{value.shape[0]}x{value.shape[1]} offsets resampled to {2 * Gh - 1}x{2 * Gw - 1} (bicubic)"
        return None

    def position_embedding_grid(self) -> torch.Tensor:
        Gh, Gw = self.grid_size
        if self.pos_embed is None:
            if self.pos_embed_2d is None:
                raise ValueError(f"this ViT has pos_embed={self.pos_embed_kind!r}: no absolute position embedding")
            return self.pos_embed_2d(Gh, Gw).detach()[0].reshape(Gh, Gw, -1)
        return self.pos_embed.detach()[0, self.num_prefix_tokens:].reshape(Gh, Gw, -1)

    def pixel_patch_projection(self) -> nn.Conv2d:
        if self.stem is not None:
            raise ValueError("a hybrid model's patch embedding is a 1x1 projection of ResNet features, not of "
                             "image pixels, so its filters cannot be shown as image patches")
        return self.patch_embed.proj

    def input_size_multiple(self) -> int:
        return self.stride

    @classmethod
    def config_from_state_dict(cls, state: Any) -> dict[str, Any] | None:
        keys = list(state)
        if "patch_embed.proj.weight" not in state or not any(k.startswith("blocks.") for k in keys):
            return None
        proj = state["patch_embed.proj.weight"]
        head = state.get("head.weight")
        pre = state.get("pre_logits.fc.weight")
        kw: dict[str, Any] = dict(embed_dim=int(proj.shape[0]), patch_size=int(proj.shape[-1]),
                                  depth=1 + max(int(k.split(".")[1]) for k in keys if k.startswith("blocks.")),
                                  hybrid="stem.conv.weight" in state,
                                  representation_size=int(pre.shape[0]) if pre is not None else None)
        info: dict[str, Any] = dict(kwargs=kw, num_classes=int(head.shape[0]) if head is not None else 0)
        pos = state.get("pos_embed")
        if pos is not None:
            n = pos.shape[1] - (1 if "cls_token" in state else 0)
            side = int(round(n ** 0.5))
            if side * side == n:
                info["grid"] = side
        return info

    @classmethod
    def row_fits(cls, row: dict[str, Any], info: dict[str, Any]) -> bool | None:
        """Whether a registry row can hold the weights ``info`` describes: None (no), False (yes, at
        another resolution), True (yes, at the file's own)."""
        kw = info["kwargs"]
        if (row.get("embed_dim") != kw["embed_dim"] or row.get("depth") != kw["depth"]
                or bool(row.get("stem_depths")) != kw["hybrid"] or row.get("patch_size") != kw["patch_size"]):
            return None
        stride = row["patch_size"] * (16 if row.get("stem_depths") else 1)
        grid = info.get("grid")
        return bool(grid) and row.get("img_size") == grid * stride

    @classmethod
    def describe_config(cls, info: dict[str, Any]) -> str:
        kw = info["kwargs"]
        kind = "hybrid R50+ViT" if kw.get("hybrid") else "ViT"
        return (f"a {kind} with embed_dim={kw.get('embed_dim')}, depth={kw.get('depth')}, "
                f"patch {kw.get('patch_size')}, {info.get('num_classes')} classes")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass: activation memory O(1) blocks, ~30% slower."""
        self.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head with a zero-initialised linear layer (ViT §3.2 fine-tuning)."""
        if global_pool is not None and global_pool != self.global_pool:
            raise ValueError("global_pool is fixed at construction (it decides whether a class token exists)")
        self.num_classes = num_classes
        self._record(num_classes=num_classes)
        if num_classes > 0:
            p = next(self.parameters())
            self.head = nn.Linear(self.head_in_features, num_classes, device=p.device, dtype=p.dtype)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:
            self.head = nn.Identity()

    @torch.no_grad()
    def set_input_size(self, img_size: int | tuple[int, int], window_size: Any = None) -> None:
        """Change the native input size: resample the position embeddings in place (ViT §3.2)."""
        if window_size is not None:
            raise ValueError("window_size applies to Swin models; ViT has no attention window")
        size = to_2tuple(img_size)
        self._check_size(size)
        new_grid = (size[0] // self.stride, size[1] // self.stride)
        if self.pos_embed is not None:
            new = resample_abs_pos_embed(self.pos_embed.data, new_grid, self.grid_size, self.num_prefix_tokens)
            self.pos_embed = nn.Parameter(new.contiguous())
        for m in [self.pos_embed_2d] + [getattr(blk.attn, "rel_pos", None) for blk in self.blocks]:
            if m is not None:
                m.set_grid(new_grid)
        self.img_size, self.grid_size = size, new_grid
        self._record(img_size=img_size if isinstance(img_size, int) else tuple(img_size))
        self.pretrained_cfg["input_size"] = (self.pretrained_cfg["input_size"][0], *size)

    # --------------------------------------------------------------------------------- forward
    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Gh, Gw, D) patch grid → (B, prefix + Gh*Gw, D) tokens with positions added."""
        B, Gh, Gw, D = x.shape
        x = x.reshape(B, Gh * Gw, D)
        if self.pos_embed_2d is not None:
            x = x + self.pos_embed_2d(Gh, Gw, like=x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        if self.pos_embed is None:
            return self.pos_drop(x)
        pos = self.pos_embed
        if symbolic(Gh, Gw) or (Gh, Gw) != self.grid_size:  # traced at any size: always (the same at the own size)
            pos = resample_abs_pos_embed(pos, (Gh, Gw), self.grid_size, self.num_prefix_tokens)
        return self.pos_drop(x + pos)

    def _attn_pos(self, grid: tuple[Any, Any] | None, x: torch.Tensor) -> Any:
        """What the blocks pass to attention for a Gh×Gw input: relative offsets or rotary angles
        (:func:`vitkit.layers.pos_embed.attention_position`), None for the other kinds."""
        if self.pos_embed_kind not in ("relative", "rope_2d"):
            return None
        if grid is None:
            raise ValueError(f"pos_embed={self.pos_embed_kind!r} needs the token grid: pass grid=(Gh, Gw)")
        return attention_position(self.pos_embed_kind, grid[0], grid[1], self.head_dim, self.num_prefix_tokens,
                                  x.device)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) image batch, got shape {tuple(x.shape)}")
        self._check_size((x.shape[-2], x.shape[-1]))
        if self.stem is not None:
            x = self.stem(x)
        x = self.patch_embed(x)  # (B, Gh, Gw, D)
        return self._pos_embed(x), (x.shape[1], x.shape[2])

    def _run_block(self, blk: nn.Module, x: torch.Tensor, pos: Any = None) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(blk, x, pos=pos, use_reentrant=False)
        return blk(x, pos=pos)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → normalised tokens (B, prefix + N, D). Fast inference runs the blocks on
        balanced chunks of images (:func:`vitkit.models.vit_fast.inference_chunk`), the same result."""
        x, grid = self._embed(x)
        chunk = vit_fast.inference_chunk(self, x)
        if chunk:
            return torch.cat([self._trunk(x[i: i + chunk], grid=grid) for i in range(0, x.shape[0], chunk)])
        return self._trunk(x, grid=grid)

    def _trunk(self, x: torch.Tensor, blocks: Sequence[nn.Module] | None = None, norm: bool = True,
               grid: tuple[Any, Any] | None = None) -> torch.Tensor:
        """Blocks (all by default) and the final norm on tokens this model made (so blocks may
        update them in place); ``grid`` (Gh, Gw) for position inside attention."""
        checkpointed = self.grad_checkpointing and torch.is_grad_enabled()
        pos = self._attn_pos(grid, x)
        for blk in self.blocks if blocks is None else blocks:
            x = self._run_block(blk, x, pos) if checkpointed else blk(x, inplace=True, pos=pos)
        return self.norm(x) if norm else x

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pool == "token":
            return x[:, 0]
        return x[:, self.num_prefix_tokens:].mean(dim=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens → logits; with ``pre_logits`` the representation before the classifier."""
        x = self.pre_logits(self.pool(x))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the last block on the [class] token only, same logits (not with position inside attention)
        if self.pos_embed_kind not in ("relative", "rope_2d") and vit_fast.tail_applies(self):
            return self.forward_head(vit_fast.features_for_head(self, x))
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        output_fmt: str = "NCHW",
        norm: bool = False,
    ) -> list[torch.Tensor]:
        """Outputs of chosen blocks: ``indices`` an int n (the last n blocks) or block indices
        (negative allowed); ``None`` is every block. ``output_fmt`` ``"NCHW"`` gives (B, D, Gh, Gw)
        maps (prefix tokens dropped), ``"NLC"`` gives (B, N, D) tokens. ``norm`` applies the final
        LayerNorm to each."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt={output_fmt!r} is not supported; choose 'NCHW' or 'NLC'")
        take = _resolve_indices(indices, len(self.blocks))
        x, (Gh, Gw) = self._embed(x)
        pos = self._attn_pos((Gh, Gw), x)
        outs = []
        for i, blk in enumerate(self.blocks[: max(take) + 1]):
            x = self._run_block(blk, x, pos)
            if i in take:
                y = self.norm(x) if norm else x
                if output_fmt == "NCHW":
                    y = y[:, self.num_prefix_tokens:].reshape(y.shape[0], Gh, Gw, -1).permute(0, 3, 1, 2)
                outs.append(y)
        return outs

    # ------------------------------------------- masked image modelling (vitkit.train.pretrain)
    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, Gh, Gw, D) patch embeddings before the class token and positions: where
        masked patch prediction corrupts them (ViT App. B.1.2) and SimMIM puts its mask token."""
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) image batch, got shape {tuple(x.shape)}")
        self._check_size((x.shape[-2], x.shape[-1]))
        return self.patch_embed(self.stem(x) if self.stem is not None else x)

    def add_positions(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, Gh, Gw, D) patch embeddings → (B, prefix + Gh·Gw, D) tokens: the class token prepended
        and the position embeddings added, as :meth:`forward_features` does."""
        return self._pos_embed(grid)

    def forward_tokens(self, tokens: torch.Tensor, grid: tuple[Any, Any] | None = None) -> torch.Tensor:
        """The blocks and the final norm on any subset of tokens (B, prefix + K, D): MAE's encoder runs
        on the visible patches only (He et al. 2022 §3). ``grid`` (Gh, Gw): the tokens are the whole
        grid, in order, as position inside attention (``pos_embed`` relative / rope_2d) needs."""
        if grid is None and self.pos_embed_kind in ("relative", "rope_2d"):
            raise ValueError(f"pos_embed={self.pos_embed_kind!r} places tokens inside attention, so the encoder "
                             "needs the whole token grid (grid=(Gh, Gw)); a subset of tokens (MAE's visible "
                             "patches) has no grid: use pos_embed=learned_1d, learned_2d, sincos_2d or none")
        return self._trunk(tokens, grid=grid)


def _resolve_indices(indices: int | Sequence[int] | None, n: int) -> list[int]:
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ValueError(f"indices={indices} must be in 1..{n} (the number of last blocks to return)")
        return list(range(n - indices, n))
    out = []
    for i in indices:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise ValueError(f"index {i} is out of range for {n} blocks")
        out.append(j)
    return sorted(set(out))


# ------------------------------------------------------------------------------ variant table
# Paper Table 1, plus the "Ti" and "S" widths of DeiT/AugReg. Name → (D, L, heads, MLP).
VIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_dim=768),
    "small": dict(embed_dim=384, depth=12, num_heads=6, mlp_dim=1536),
    "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_dim=3072),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096),
    "huge": dict(embed_dim=1280, depth=32, num_heads=16, mlp_dim=5120),
}
# Small configurations for 28×28 (MNIST demo) and 32×32 (CIFAR) inputs.
VIT_SMALL_IMAGE = {
    "vit_micro_patch4_28": dict(img_size=28, patch_size=4, in_chans=1, num_classes=10,
                                embed_dim=64, depth=6, num_heads=4, mlp_dim=128),
    # the embedded demo's model: 7×7 patches (16 tokens) and average pooling (the paper's GAP head,
    # §D.3) learn MNIST-sized data fastest on a CPU; see vitkit.train.recipes.MnistDemo
    "vit_micro_patch7_gap_28": dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, global_pool="avg",
                                    embed_dim=64, depth=6, num_heads=4, mlp_dim=128),
    "vit_micro_patch4_32": dict(img_size=32, patch_size=4, num_classes=10,
                                embed_dim=64, depth=6, num_heads=4, mlp_dim=128),
    "vit_tiny_patch4_32": dict(img_size=32, patch_size=4, num_classes=10, **VIT_SIZES["tiny"]),
    "vit_small_patch4_32": dict(img_size=32, patch_size=4, num_classes=10, **VIT_SIZES["small"]),
}
SMALL_IMAGE_PREPROCESS = dict(interpolation="bilinear", crop_pct=1.0)


def _register_all() -> None:
    for size, row in VIT_SIZES.items():
        for patch in (8, 14, 16, 32):
            for res in (224, 384):
                if res % patch:
                    continue  # e.g. 384 is not a multiple of 14
                register(f"vit_{size}_patch{patch}_{res}", VisionTransformer,
                         dict(img_size=res, patch_size=patch, **row),
                         dict(VIT_PREPROCESS, input_size=(3, res, res)), family="vit")
    for res in (224, 384):  # hybrid R50+ViT-B/16: ResNet-BiT stages (3, 4, 9) → /16, 1×1 patches
        register(f"vit_base_r50_s16_{res}", VisionTransformer,
                 dict(img_size=res, patch_size=1, stem_depths=(3, 4, 9), **VIT_SIZES["base"]),
                 dict(VIT_PREPROCESS, input_size=(3, res, res)), family="vit")
    for name, row in VIT_SMALL_IMAGE.items():
        size = row["img_size"]
        stats = dict(mean=(0.5,), std=(0.5,)) if row.get("in_chans") == 1 else dict(mean=(0.5,) * 3, std=(0.5,) * 3)
        register(name, VisionTransformer, row,
                 dict(SMALL_IMAGE_PREPROCESS, **stats, input_size=(row.get("in_chans", 3), size, size)),
                 family="vit")


_register_all()

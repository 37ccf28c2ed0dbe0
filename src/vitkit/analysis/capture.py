"""Attention maps of chosen layers, from a model that keeps fused attention everywhere else.

:class:`~vitkit.layers.attention.Attention` and :class:`~vitkit.models.swin.WindowAttention`
compute explicit softmax probabilities only while their ``capture`` flag is set.
:func:`capture_attention` sets it on the requested layers alone, takes each map out of its module
as the layer runs (a forward hook) and either keeps it (one map per requested layer: the last
forward's) or hands it to a callback and drops it, so memory stays bounded by what was asked for.

For Swin the maps are per window, (B·nW, heads, N, N) in the padded-then-shifted frame; the
recorder keeps each block's :class:`WindowGeometry`, and :func:`window_token_coords`,
:func:`window_attention_to_full` and :func:`apply_window_attention` map windows back to the
feature map (undoing the cyclic shift, dropping the padding).
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.window import window_geometry, window_partition, window_reverse
from ..models.base import AttentionLayer


@dataclass(frozen=True)
class WindowGeometry:
    """Where a Swin block's windows lie in its H×W feature map (see :mod:`vitkit.layers.window`):
    window wh×ww, cyclic shift (sh, sw), the map padded to (Hp, Wp) before the shift."""

    H: int
    W: int
    wh: int
    ww: int
    sh: int
    sw: int

    @property
    def Hp(self) -> int:
        return -(-self.H // self.wh) * self.wh

    @property
    def Wp(self) -> int:
        return -(-self.W // self.ww) * self.ww

    @property
    def num_windows(self) -> int:
        return (self.Hp // self.wh) * (self.Wp // self.ww)


def attention_layers(model: nn.Module) -> list[AttentionLayer]:
    """The attention layers of a vitkit ViT (plain or hybrid) or Swin model, in forward order; the
    model may be wrapped (DDP, DataParallel, ``torch.compile``: the wrapper's forward then records
    too, a compiled one after recompiling for the capture)."""
    from ..train.distributed import unwrap_model

    model = unwrap_model(model)
    if not callable(getattr(model, "attention_layers", None)):
        raise TypeError(f"attention analysis needs a vitkit model (ViT, hybrid or Swin: they list their "
                        f"attention_layers()), not {type(model).__name__}")
    return model.attention_layers()


def select_layers(layers: int | Sequence[int] | str, count: int) -> list[int]:
    """Resolve ``layers`` (an index, indices with negatives allowed, or ``"all"``) to sorted indices."""
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers={layers!r}: pass 'all', a layer index or a list of indices")
        return list(range(count))
    idx = [layers] if isinstance(layers, int) else list(layers)
    if not idx:
        raise ValueError("layers is empty; pass 'all', a layer index or a list of indices")
    out = set()
    for i in idx:
        j = i + count if i < 0 else i
        if not 0 <= j < count:
            raise ValueError(f"layer index {i} is out of range: the model has {count} attention layers")
        out.add(j)
    return sorted(out)


MapCallback = Callable[[AttentionLayer, torch.Tensor, "WindowGeometry | None"], None]


@dataclass
class AttentionRecorder:
    """What :func:`capture_attention` yields: the chosen ``layers`` and, after each forward, their
    maps (``maps[index]``; none when a callback consumes them) and Swin geometry."""

    layers: list[AttentionLayer]
    maps: dict[int, torch.Tensor] = field(default_factory=dict)
    geometry: dict[int, WindowGeometry] = field(default_factory=dict)
    callback: MapCallback | None = None
    device: torch.device | str | None = None

    def _geometry_hook(self, layer: AttentionLayer, block: nn.Module, args: tuple) -> None:
        _, H, W, _ = args[0].shape  # Swin blocks take (B, H, W, C)
        self.geometry[layer.index] = WindowGeometry(H, W, *window_geometry(H, W, block.attn.window_size, block.shifted))

    def _map_hook(self, layer: AttentionLayer, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        probs = module.attn_map
        module.attn_map = None  # one copy only: the recorder's (or none)
        if probs is None:
            return
        if self.device is not None:
            probs = probs.to(self.device)
        geom = self.geometry.get(layer.index)
        if self.callback is not None:
            self.callback(layer, probs, geom)
        else:
            self.maps[layer.index] = probs


@contextmanager
def capture_attention(
    model: nn.Module,
    layers: int | Sequence[int] | str,
    *,
    callback: MapCallback | None = None,
    device: torch.device | str | None = None,
) -> Iterator[AttentionRecorder]:
    """Record the attention probabilities of the chosen layers during forwards inside the block.

    ``layers``: attention-layer indices (ViT: block index; Swin: blocks counted across stages), or
    ``"all"``. Other layers keep the fused kernel. Maps are (B, heads, N, N) for ViT and
    (B·nW, heads, N, N) for Swin. With ``callback(layer, probs, geometry)`` nothing is kept (reduce
    as you go); ``device`` moves maps (e.g. to ``"cpu"``). Flags and hooks are restored on exit.

        with capture_attention(model, [0, -1]) as rec:
            model(x)
        first, last = rec.maps[0], rec.maps[len(model.blocks) - 1]
    """
    all_layers = attention_layers(model)
    chosen = [all_layers[i] for i in select_layers(layers, len(all_layers))]
    rec = AttentionRecorder(chosen, callback=callback, device=device)
    saved = [(layer.module, layer.module.capture) for layer in chosen]
    handles = []
    try:
        for layer in chosen:
            layer.module.capture = True
            if layer.windowed:
                handles.append(layer.block.register_forward_pre_hook(functools.partial(rec._geometry_hook, layer)))
            handles.append(layer.module.register_forward_hook(functools.partial(rec._map_hook, layer)))
        yield rec
    finally:
        for h in handles:
            h.remove()
        for module, flag in saved:
            module.capture = flag
            module.attn_map = None


# ------------------------------------------------------------------ Swin windows → feature map
def window_token_coords(g: WindowGeometry, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) in the H×W map of every window token, (nW, N, 2), and which are real (not
    padding), (nW, N). The block pads to (Hp, Wp), then rolls by (−sh, −sw): the token at shifted
    position r came from row (r + sh) mod Hp."""
    rows = (torch.arange(g.Hp, device=device) + g.sh) % g.Hp
    cols = (torch.arange(g.Wp, device=device) + g.sw) % g.Wp
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # (Hp, Wp, 2)
    coords = window_partition(grid[None], g.wh, g.ww)  # (nW, N, 2)
    valid = (coords[..., 0] < g.H) & (coords[..., 1] < g.W)  # (nW, N)
    return coords, valid


def window_attention_to_full(maps: torch.Tensor, g: WindowGeometry) -> torch.Tensor:
    """(B·nW, heads, N, N) window maps → dense (B, heads, H·W, H·W) over the feature map, row-major.

    Pairs in different windows (and padding) get 0. Dense: meant for small maps and tests; use
    :func:`apply_window_attention` to apply the maps without materialising them.
    """
    nW, N = g.num_windows, g.wh * g.ww
    if maps.shape[0] % nW or maps.shape[-1] != N:
        raise ValueError(f"maps of shape {tuple(maps.shape)} do not match {nW} windows of {N} tokens")
    B, heads, HW = maps.shape[0] // nW, maps.shape[1], g.H * g.W
    coords, valid = window_token_coords(g, maps.device)
    flat = coords[..., 0] * g.W + coords[..., 1]  # (nW, N) index in the H·W map
    pair = valid[:, :, None] & valid[:, None, :]  # (nW, N, N)
    lin = (flat[:, :, None] * HW + flat[:, None, :])[pair]  # (M,) flat (query, key) index
    vals = maps.view(B, nW, heads, N, N).permute(0, 2, 1, 3, 4)[..., pair]  # (B, heads, M)
    full = maps.new_zeros(B, heads, HW * HW)
    full.index_copy_(2, lin, vals)
    return full.view(B, heads, HW, HW)


def apply_window_attention(x: torch.Tensor, maps: torch.Tensor, g: WindowGeometry) -> torch.Tensor:
    """Apply window attention (B·nW, N, N) (heads already fused) to a (B, H, W, K) map, exactly as
    the block applies it to values: pad, shift, partition, multiply, reverse, unshift, crop.
    Equal to ``window_attention_to_full(maps[:, None], g)[:, 0] @ x.flatten(1, 2)``."""
    B, H, W, K = x.shape
    if (H, W) != (g.H, g.W):
        raise ValueError(f"map of size {H}x{W} does not match the block's {g.H}x{g.W}")
    if g.Hp != H or g.Wp != W:
        x = F.pad(x, (0, 0, 0, g.Wp - W, 0, g.Hp - H))
    if g.sh or g.sw:
        x = torch.roll(x, shifts=(-g.sh, -g.sw), dims=(1, 2))
    y = maps @ window_partition(x, g.wh, g.ww)  # (B·nW, N, K)
    y = window_reverse(y, g.wh, g.ww, g.Hp, g.Wp)  # (B, Hp, Wp, K)
    if g.sh or g.sw:
        y = torch.roll(y, shifts=(g.sh, g.sw), dims=(1, 2))
    return y[:, :H, :W]

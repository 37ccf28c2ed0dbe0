"""What architecture a vitkit-named state dict describes, read off its shapes; and the registered
model names that fit it (for ``vitkit convert`` without ``--model`` and for clear mismatch errors)."""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from ..registry import get_entry, list_models


def _max_index(keys: list[str], pattern: str) -> int:
    found = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
    return max(found) + 1 if found else 0


def infer_architecture(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Family and sizes of a vitkit-named state dict: ``family`` ("vit" or "swin"), ``embed_dim``,
    ``depth``/``depths``, ``patch_size``, ``num_classes`` (0 if headless), ``representation_size``,
    ``hybrid``, ``grid`` (ViT position grid side) or ``window_size`` (Swin)."""
    keys = list(state)
    info: dict[str, Any] = {}
    head = state.get("head.weight")
    info["num_classes"] = int(head.shape[0]) if head is not None else 0
    if any(k.startswith("stages.") for k in keys):
        info["family"] = "swin"
        proj = state["patch_embed.proj.weight"]
        info["embed_dim"], info["patch_size"] = int(proj.shape[0]), int(proj.shape[-1])
        n_stages = _max_index(keys, r"stages\.(\d+)\.")
        info["depths"] = tuple(_max_index(keys, rf"stages\.{s}\.blocks\.(\d+)\.") for s in range(n_stages))
        table = state.get("stages.0.blocks.0.attn.relative_position_bias_table")
        if table is not None:
            info["window_size"] = (int(round(table.shape[0] ** 0.5)) + 1) // 2
            info["num_heads"] = tuple(int(state[f"stages.{s}.blocks.0.attn.relative_position_bias_table"].shape[1])
                                      for s in range(n_stages))
        return info
    info["family"] = "vit"
    info["hybrid"] = "stem.conv.weight" in state
    proj = state.get("patch_embed.proj.weight")
    if proj is not None:
        info["embed_dim"], info["patch_size"] = int(proj.shape[0]), int(proj.shape[-1])
    info["depth"] = _max_index(keys, r"blocks\.(\d+)\.")
    pre = state.get("pre_logits.fc.weight")
    info["representation_size"] = int(pre.shape[0]) if pre is not None else None
    pos = state.get("pos_embed")
    if pos is not None:
        n = pos.shape[1] - (1 if "cls_token" in state else 0)
        side = int(round(n ** 0.5))
        info["grid"] = side if side * side == n else None
    return info


def candidate_models(info: Mapping[str, Any]) -> list[str]:
    """Registered names whose variant row fits ``info``; the ones at the checkpoint's own
    resolution first."""
    exact, other = [], []
    for name in list_models(f"{info.get('family', '')}_*"):
        kw = get_entry(name).kwargs
        if kw.get("embed_dim", None) != info.get("embed_dim"):
            continue
        if info.get("family") == "swin":
            if tuple(kw.get("depths", ())) != tuple(info.get("depths", ())) or kw.get("patch_size") != info.get("patch_size"):
                continue
            (exact if kw.get("window_size") == info.get("window_size") else other).append(name)
        else:
            if kw.get("depth") != info.get("depth") or bool(kw.get("stem_depths")) != bool(info.get("hybrid")):
                continue
            if kw.get("patch_size") != info.get("patch_size"):
                continue
            stride = kw["patch_size"] * (16 if kw.get("stem_depths") else 1)
            grid = info.get("grid")
            (exact if grid and kw.get("img_size") == grid * stride else other).append(name)
    return exact + other


def describe(info: Mapping[str, Any]) -> str:
    """A one-line description of ``info`` for error messages."""
    if info.get("family") == "swin":
        return (f"a Swin with embed_dim={info.get('embed_dim')}, depths={info.get('depths')}, "
                f"window {info.get('window_size')}, {info.get('num_classes')} classes")
    kind = "hybrid R50+ViT" if info.get("hybrid") else "ViT"
    return (f"a {kind} with embed_dim={info.get('embed_dim')}, depth={info.get('depth')}, "
            f"patch {info.get('patch_size')}, {info.get('num_classes')} classes")

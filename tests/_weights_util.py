"""Helpers for the weights and parity tests: random weights, tolerances, and checkpoint writers in
the official layouts built straight from REFERENCE.md's tables (independent of vitkit's tables)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

EMBEDDING_WORDS = ("pos", "cls", "class_token", "relative_position_bias_table", "position")


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights that are not any init default: norms' gains 1 ± 0.1, biases ±0.05, matrices
    ~ N(0, 1/fan_in), embeddings and bias tables ~ N(0, 0.2²)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if any(w in name for w in EMBEDDING_WORDS):
            p.copy_(0.2 * r)
        elif p.ndim == 1:
            p.copy_(1 + 0.1 * r if name.endswith("weight") else 0.05 * r)
        else:
            p.copy_(r * p[0].numel() ** -0.5)
    return model.eval()


def rel_diff(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max |out − ref| / max |ref| (the issue's parity measure)."""
    return ((out - ref).abs().max() / ref.abs().max()).item()


def assert_parity(out: torch.Tensor, ref: torch.Tensor, tol: float = 1e-4) -> float:
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert torch.isfinite(out).all()
    d = rel_diff(out, ref)
    assert d <= tol, f"max|diff| = {d:.3g} × max|ref| > {tol}"
    return d


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy()


def official_vit_npz_from_timm(model: nn.Module, path: Path, pre_logits: tuple[torch.Tensor, torch.Tensor] | None = None,
                               head: tuple[torch.Tensor, torch.Tensor] | None = None) -> Path:
    """Write a timm ViT (plain or hybrid) in Google's .npz layout, following REFERENCE.md's table.
    ``pre_logits``/``head`` (PyTorch (out, in) weight, bias) replace the model's classifier, to
    build the original ImageNet-21k layout that timm cannot hold."""
    sd = {k: v for k, v in model.state_dict().items()}
    D = sd["pos_embed"].shape[-1]
    heads = model.blocks[0].attn.num_heads
    w: dict[str, np.ndarray] = {}
    conv = lambda t: _np(t).transpose(2, 3, 1, 0)  # (out, in, kh, kw) → (kh, kw, in, out)
    w["embedding/kernel"] = conv(sd["patch_embed.proj.weight"])
    w["embedding/bias"] = _np(sd["patch_embed.proj.bias"])
    w["cls"] = _np(sd["cls_token"])
    w["Transformer/posembed_input/pos_embedding"] = _np(sd["pos_embed"])
    for i in range(len(model.blocks)):
        b, o = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        w[o + "LayerNorm_0/scale"], w[o + "LayerNorm_0/bias"] = _np(sd[b + "norm1.weight"]), _np(sd[b + "norm1.bias"])
        w[o + "LayerNorm_2/scale"], w[o + "LayerNorm_2/bias"] = _np(sd[b + "norm2.weight"]), _np(sd[b + "norm2.bias"])
        qkv_w, qkv_b = sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]
        for j, n in enumerate(("query", "key", "value")):
            a = o + f"MultiHeadDotProductAttention_1/{n}/"
            w[a + "kernel"] = _np(qkv_w[j * D:(j + 1) * D]).T.reshape(D, heads, D // heads)
            w[a + "bias"] = _np(qkv_b[j * D:(j + 1) * D]).reshape(heads, D // heads)
        a = o + "MultiHeadDotProductAttention_1/out/"
        w[a + "kernel"] = _np(sd[b + "attn.proj.weight"]).T.reshape(heads, D // heads, D)
        w[a + "bias"] = _np(sd[b + "attn.proj.bias"])
        for j in (0, 1):
            w[o + f"MlpBlock_3/Dense_{j}/kernel"] = _np(sd[b + f"mlp.fc{j + 1}.weight"]).T
            w[o + f"MlpBlock_3/Dense_{j}/bias"] = _np(sd[b + f"mlp.fc{j + 1}.bias"])
    w["Transformer/encoder_norm/scale"], w["Transformer/encoder_norm/bias"] = _np(sd["norm.weight"]), _np(sd["norm.bias"])
    if pre_logits is not None:
        w["pre_logits/kernel"], w["pre_logits/bias"] = _np(pre_logits[0]).T, _np(pre_logits[1])
    hw, hb = head if head is not None else (sd["head.weight"], sd["head.bias"])
    w["head/kernel"], w["head/bias"] = _np(hw).T, _np(hb)
    for k, v in sd.items():  # hybrid: ResNet-BiT stem, blocks numbered from 1 in the file
        if k.startswith("patch_embed.backbone.stem."):
            n = {"conv.weight": "conv_root/kernel", "norm.weight": "gn_root/scale", "norm.bias": "gn_root/bias"}
            w[n[k.split("stem.", 1)[1]]] = conv(v) if v.ndim == 4 else _np(v)
        m = re.match(r"patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.(.+)", k)
        if m:
            s, u, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            rest = (rest.replace("downsample.conv.weight", "conv_proj/kernel").replace("downsample.norm.", "gn_proj/")
                    .replace("norm", "gn").replace(".weight", "/kernel" if "conv" in rest else "/scale")
                    .replace(".bias", "/bias").replace("gn_proj/weight", "gn_proj/scale"))
            w[f"block{s + 1}/unit{u + 1}/{rest}"] = conv(v) if v.ndim == 4 else _np(v)
    with open(path, "wb") as fh:
        np.savez(fh, **w)
    return path


def official_swin_pth_from_timm(model: nn.Module, path: Path, stale_buffers: bool = True) -> Path:
    """Write a timm Swin in Microsoft's .pth layout: ``{"model": state_dict}``, merging at the END of
    stages 0–2, ``head`` not ``head.fc``; with ``stale_buffers``, garbage ``relative_position_index``
    and ``attn_mask`` tensors of the kind a file fine-tuned at another size carries."""
    out = {}
    for k, v in model.state_dict().items():
        m = re.match(r"layers\.(\d+)\.downsample\.(.+)", k)
        if m:
            k = f"layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}"
        out[k.replace("head.fc.", "head.")] = v.clone()
    if stale_buffers:
        g = torch.Generator().manual_seed(7)
        for name, mod in model.named_modules():
            if name.endswith(".attn") and hasattr(mod, "relative_position_bias_table"):
                out[f"{name}.relative_position_index"] = torch.randint(0, 10, (49, 49), generator=g)
                blk = name.rsplit(".", 1)[0]
                if int(blk.rsplit(".", 1)[1]) % 2 == 1:
                    out[f"{blk}.attn_mask"] = torch.randn(4, 49, 49, generator=g) * 100
    torch.save({"model": out, "epoch": 299}, path)
    return path

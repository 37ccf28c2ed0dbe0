"""Google's official ViT ``.npz`` (google-research/vision_transformer, the official JAX code): Flax
parameter paths joined by ``/``, kernels in Flax layouts.

Covers the AugReg files, the original ImageNet-21k files (a tanh ``pre_logits`` layer and a
21,843-class head) and the hybrid R50+ViT files (ResNet-BiT ``conv_root``/``gn_root``/
``block{s}/unit{b}`` keys). Attention kernels are per head: q/k/v (D, heads, hd), out (heads, hd, D).
"""
from __future__ import annotations

import torch

from . import Format
from .table import Rule, Transform, wb

PREFIXES = ("opt/target/", "params/")  # some files nest the parameters one level down


def _t(f):
    return lambda t: f(t).contiguous()


CONV = Transform("conv_hwio", _t(lambda t: t.permute(3, 2, 0, 1)),  # (kh, kw, in, out) → (out, in, kh, kw)
                 lambda t, ctx: t.permute(2, 3, 1, 0).contiguous())
DENSE = Transform("dense", _t(lambda t: t.T), lambda t, ctx: t.T.contiguous())  # (in, out) ↔ (out, in)
FLAT = Transform("flat", _t(lambda t: t.reshape(-1)), lambda t, ctx: t)  # norm params, (1,1,1,C) in some files
HEADS_IN = Transform("heads_in", _t(lambda t: t.reshape(t.shape[0], -1).T),  # (D, heads, hd) → (heads*hd, D)
                     lambda t, ctx: t.T.reshape(t.shape[1], ctx["num_heads"], -1).contiguous())
HEADS_BIAS = Transform("heads_bias", _t(lambda t: t.reshape(-1)),  # (heads, hd) → (heads*hd,)
                       lambda t, ctx: t.reshape(ctx["num_heads"], -1).contiguous())
HEADS_OUT = Transform("heads_out", _t(lambda t: t.reshape(-1, t.shape[-1]).T),  # (heads, hd, D) → (D, heads*hd)
                      lambda t, ctx: t.T.reshape(ctx["num_heads"], -1, t.shape[0]).contiguous())

KB = ("kernel", "bias")
SB = ("scale", "bias")
BLK = "Transformer/encoderblock_{i}"
ATT = f"{BLK}/MultiHeadDotProductAttention_1"

RULES: list[Rule] = [
    Rule("cls", "cls_token"),
    *wb("embedding", "patch_embed.proj", CONV, names=KB),
    Rule("Transformer/posembed_input/pos_embedding", "pos_embed"),
    *wb(f"{BLK}/LayerNorm_0", "blocks.{i}.norm1", FLAT, FLAT, names=SB),
    *[r for p, n in (("q", "query"), ("k", "key"), ("v", "value"))
      for r in (Rule(f"{ATT}/{n}/kernel", f"blocks.{{i}}.attn.qkv.weight#{p}", HEADS_IN),
                Rule(f"{ATT}/{n}/bias", f"blocks.{{i}}.attn.qkv.bias#{p}", HEADS_BIAS))],
    Rule(f"{ATT}/out/kernel", "blocks.{i}.attn.proj.weight", HEADS_OUT),
    Rule(f"{ATT}/out/bias", "blocks.{i}.attn.proj.bias"),
    *wb(f"{BLK}/LayerNorm_2", "blocks.{i}.norm2", FLAT, FLAT, names=SB),
    *wb(f"{BLK}/MlpBlock_3/Dense_0", "blocks.{i}.mlp.fc1", DENSE, names=KB),
    *wb(f"{BLK}/MlpBlock_3/Dense_1", "blocks.{i}.mlp.fc2", DENSE, names=KB),
    *wb("Transformer/encoder_norm", "norm", FLAT, FLAT, names=SB),
    *wb("pre_logits", "pre_logits.fc", DENSE, names=KB),  # original ImageNet-21k files only
    *wb("head", "head", DENSE, names=KB),
    # hybrid: ResNet-BiT stem (block{s+1}/unit{b+1} are 1-based in the file)
    Rule("conv_root/kernel", "stem.conv.weight", CONV),
    *wb("gn_root", "stem.norm", FLAT, FLAT, names=SB),
    *[Rule(f"block{{s+1}}/unit{{b+1}}/conv{n}/kernel", f"stem.stages.{{s}}.{{b}}.conv{n}.weight", CONV) for n in (1, 2, 3)],
    *[r for n in (1, 2, 3) for r in wb(f"block{{s+1}}/unit{{b+1}}/gn{n}", f"stem.stages.{{s}}.{{b}}.norm{n}",
                                         FLAT, FLAT, names=SB)],
    Rule("block{s+1}/unit{b+1}/conv_proj/kernel", "stem.stages.{s}.{b}.downsample.conv.weight", CONV),
    *wb("block{s+1}/unit{b+1}/gn_proj", "stem.stages.{s}.{b}.downsample.norm", FLAT, FLAT, names=SB),
]


def strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in PREFIXES:
        if f"{prefix}embedding/kernel" in state:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def detect(keys: set[str]) -> bool:
    return any(k.endswith("embedding/kernel") or "Transformer/encoderblock_" in k for k in keys)


def implies(keys: set[str]) -> dict[str, tuple[str, str]]:
    """The official JAX code computes GELU with Flax's tanh form and, in the hybrid's ResNet, its own
    StdConv/GroupNorm epsilons (:mod:`vitkit.models.resnet_stem`): files trained there need both."""
    out = {"act": ("gelu_tanh", "the official JAX code trained these weights with tanh GELU")}
    if any(k.endswith("conv_root/kernel") for k in keys):
        out["stem_numerics"] = ("jax", "the official JAX code trained these weights with its own "
                                       "StdConv/GroupNorm epsilons")
    return out


FORMAT = Format("official_vit_npz", "Google's official ViT .npz (AugReg, ImageNet-21k, R50 hybrid)",
                detect, RULES, prepare=strip_prefix, implies=implies)

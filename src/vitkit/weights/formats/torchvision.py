"""torchvision ``vit_*`` and ``swin_*`` state dicts (``torchvision.models``).

ViT: ``class_token``, ``conv_proj``, ``encoder.pos_embedding``,
``encoder.layers.encoder_layer_{i}.{ln_1, self_attention.in_proj_*, self_attention.out_proj, ln_2,
mlp.0, mlp.3}`` (qkv already fused in q, k, v order), ``encoder.ln``, ``heads.{pre_logits,head}``.
Swin: ``features`` is a flat list: [0] patch embedding (conv, permute, norm), then blocks of stage
s at ``features[2s+1]`` and the merging that opens stage s at ``features[2s]``.
"""
from __future__ import annotations

from . import Format
from .table import Rule, wb

L = "encoder.layers.encoder_layer_{i}"
MAX_STAGES = 8

RULES: list[Rule] = [
    Rule("class_token", "cls_token"),
    *wb("conv_proj", "patch_embed.proj"),
    Rule("encoder.pos_embedding", "pos_embed"),
    *wb(f"{L}.ln_1", "blocks.{i}.norm1"),
    Rule(f"{L}.self_attention.in_proj_weight", "blocks.{i}.attn.qkv.weight"),
    Rule(f"{L}.self_attention.in_proj_bias", "blocks.{i}.attn.qkv.bias"),
    *wb(f"{L}.self_attention.out_proj", "blocks.{i}.attn.proj"),
    *wb(f"{L}.ln_2", "blocks.{i}.norm2"),
    *wb(f"{L}.mlp.0", "blocks.{i}.mlp.fc1"),
    *wb(f"{L}.mlp.3", "blocks.{i}.mlp.fc2"),
    *wb(f"{L}.mlp.linear_1", "blocks.{i}.mlp.fc1"),  # torchvision < 0.13 names
    *wb(f"{L}.mlp.linear_2", "blocks.{i}.mlp.fc2"),
    *wb("encoder.ln", "norm"),
    *wb("heads.pre_logits", "pre_logits.fc"),
    *wb("heads.head", "head"),
    # Swin
    *wb("features.0.0", "patch_embed.proj"),
    *wb("features.0.2", "patch_embed.norm"),
    *[r for s in range(MAX_STAGES) for r in (
        *[r for src, dst in (("norm1", "norm1"), ("attn.qkv", "attn.qkv"), ("attn.proj", "attn.proj"),
                             ("norm2", "norm2"), ("mlp.0", "mlp.fc1"), ("mlp.3", "mlp.fc2"))
          for r in wb(f"features.{2 * s + 1}.{{b}}.{src}", f"stages.{s}.blocks.{{b}}.{dst}")],
        Rule(f"features.{2 * s + 1}.{{b}}.attn.relative_position_bias_table",
             f"stages.{s}.blocks.{{b}}.attn.relative_position_bias_table"),
    )],
    *[r for s in range(1, MAX_STAGES) for r in (
        *wb(f"features.{2 * s}.norm", f"stages.{s}.downsample.norm"),
        Rule(f"features.{2 * s}.reduction.weight", f"stages.{s}.downsample.reduction.weight"),
    )],
    *wb("norm", "norm"),
    *wb("head", "head"),
]

IGNORE = {"features.{k}.{b}.attn.relative_position_index": "buffer recomputed from the window size"}


def detect(keys: set[str]) -> bool:
    return "class_token" in keys or "features.0.0.weight" in keys or any(
        k.startswith("encoder.layers.encoder_layer_") for k in keys)


FORMAT = Format("torchvision", "torchvision.models vit_* / swin_* state dict", detect, RULES, IGNORE)

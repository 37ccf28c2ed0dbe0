"""timm (huggingface/pytorch-image-models) state dicts, ``.pth``/``.bin``/``.safetensors``.

Plain ViT keys are the same as vitkit's. The hybrid's ResNet sits under
``patch_embed.backbone.{stem,stages.s.blocks.b}`` (vitkit: ``stem.{conv,norm,stages.s.b}``). Swin
stages are ``layers.{s}`` with merging at the start of stages 1–3, as in vitkit, and the classifier
is ``head.fc``. Older timm files also stored Swin's index and mask buffers: dropped, recomputed.
"""
from __future__ import annotations

from . import Format
from .official_swin_pth import swin_block_rules
from .table import Rule, wb

VIT_BLOCK = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
BOTTLENECK = ("conv1", "conv2", "conv3")

RULES: list[Rule] = [
    # ViT (ViT §3.1): identical names
    Rule("cls_token", "cls_token"),
    Rule("pos_embed", "pos_embed"),
    *wb("patch_embed.proj", "patch_embed.proj"),
    *[r for n in VIT_BLOCK for r in wb(f"blocks.{{i}}.{n}", f"blocks.{{i}}.{n}")],
    Rule("blocks.{i}.ls1.gamma", "blocks.{i}.ls1.gamma"),
    Rule("blocks.{i}.ls2.gamma", "blocks.{i}.ls2.gamma"),
    *wb("pre_logits.fc", "pre_logits.fc"),
    # hybrid ResNet-BiT stem
    Rule("patch_embed.backbone.stem.conv.weight", "stem.conv.weight"),
    *wb("patch_embed.backbone.stem.norm", "stem.norm"),
    *[Rule(f"patch_embed.backbone.stages.{{s}}.blocks.{{b}}.{c}.weight", f"stem.stages.{{s}}.{{b}}.{c}.weight")
      for c in BOTTLENECK],
    *[r for n in ("norm1", "norm2", "norm3", "downsample.norm")
      for r in wb(f"patch_embed.backbone.stages.{{s}}.blocks.{{b}}.{n}", f"stem.stages.{{s}}.{{b}}.{n}")],
    Rule("patch_embed.backbone.stages.{s}.blocks.{b}.downsample.conv.weight", "stem.stages.{s}.{b}.downsample.conv.weight"),
    # Swin
    *wb("patch_embed.norm", "patch_embed.norm"),
    *swin_block_rules("layers.{s}.blocks.{b}"),
    *wb("layers.{s}.downsample.norm", "stages.{s}.downsample.norm"),
    Rule("layers.{s}.downsample.reduction.weight", "stages.{s}.downsample.reduction.weight"),
    *wb("head.fc", "head"),
    # both
    *wb("norm", "norm"),
    *wb("head", "head"),
]

IGNORE = {
    "layers.{s}.blocks.{b}.attn.relative_position_index": "buffer recomputed from the window size",
    "layers.{s}.blocks.{b}.attn_mask": "buffer recomputed for each input size (pad-then-shift rule)",
}


def detect(keys: set[str]) -> bool:
    return ("blocks.0.attn.qkv.weight" in keys or "head.fc.weight" in keys
            or any(k.startswith(("patch_embed.backbone.", "layers.0.blocks.")) for k in keys))


FORMAT = Format("timm", "timm state dict (.pth, .bin or .safetensors)", detect, RULES, IGNORE)

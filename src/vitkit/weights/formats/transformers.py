"""Hugging Face transformers ``ViT*`` and ``Swin*`` state dicts, in both naming eras: the names
stored in hub files (``encoder.layer.{i}.attention.attention.query``, ``intermediate.dense`` …) and
the names of transformers ≥ 5 models in memory (``layers.{i}.attention.q_proj``, ``mlp.fc1`` …).
q, k and v are separate linears (fused here). The leading ``vit.``/``swin.`` of the
``*ForImageClassification`` classes is optional. Swin stores patch merging at the END of stages
0–2, as the official code does. ``pooler.dense`` (ViTModel) is the paper's tanh pre-logits layer.
"""
from __future__ import annotations

import torch

from . import Format
from .official_swin_pth import TOKENS_TO_GRID
from .table import Rule, wb

QKV = (("q", "query", "q_proj"), ("k", "key", "k_proj"), ("v", "value", "v_proj"))


def _block(src: str, dst: str, legacy_attn: str) -> list[Rule]:
    """One encoder block in both eras; ``legacy_attn`` is ``attention.attention`` (ViT) or
    ``attention.self`` (Swin)."""
    rules = [*wb(f"{src}.layernorm_before", f"{dst}.norm1"), *wb(f"{src}.layernorm_after", f"{dst}.norm2")]
    for part, old, new in QKV:
        rules += [Rule(f"{src}.{legacy_attn}.{old}.weight", f"{dst}.attn.qkv.weight#{part}"),
                  Rule(f"{src}.{legacy_attn}.{old}.bias", f"{dst}.attn.qkv.bias#{part}"),
                  Rule(f"{src}.attention.{new}.weight", f"{dst}.attn.qkv.weight#{part}"),
                  Rule(f"{src}.attention.{new}.bias", f"{dst}.attn.qkv.bias#{part}")]
    rules += [*wb(f"{src}.attention.output.dense", f"{dst}.attn.proj"), *wb(f"{src}.attention.o_proj", f"{dst}.attn.proj"),
              *wb(f"{src}.intermediate.dense", f"{dst}.mlp.fc1"), *wb(f"{src}.output.dense", f"{dst}.mlp.fc2"),
              *wb(f"{src}.mlp.fc1", f"{dst}.mlp.fc1"), *wb(f"{src}.mlp.fc2", f"{dst}.mlp.fc2")]
    return rules


SWIN_BLOCK = "encoder.layers.{s}.blocks.{b}"
RULES: list[Rule] = [
    # ViT
    Rule("embeddings.cls_token", "cls_token"),
    Rule("embeddings.position_embeddings", "pos_embed"),
    *wb("embeddings.patch_embeddings.projection", "patch_embed.proj"),
    *_block("encoder.layer.{i}", "blocks.{i}", "attention.attention"),
    *_block("layers.{i}", "blocks.{i}", "attention.attention"),
    *wb("pooler.dense", "pre_logits.fc"),
    # Swin
    *wb("embeddings.norm", "patch_embed.norm"),
    Rule("embeddings.swin_position_embeddings", "absolute_pos_embed", TOKENS_TO_GRID),
    *_block(SWIN_BLOCK, "stages.{s}.blocks.{b}", "attention.self"),
    Rule(f"{SWIN_BLOCK}.attention.self.relative_position_bias_table",
         "stages.{s}.blocks.{b}.attn.relative_position_bias_table"),
    Rule(f"{SWIN_BLOCK}.attention.relative_position_bias.relative_position_bias_table",
         "stages.{s}.blocks.{b}.attn.relative_position_bias_table"),
    *wb("encoder.layers.{s}.downsample.norm", "stages.{s+1}.downsample.norm"),  # end of s → start of s+1
    Rule("encoder.layers.{s}.downsample.reduction.weight", "stages.{s+1}.downsample.reduction.weight"),
    # both
    *wb("layernorm", "norm"),
    *wb("classifier", "head"),
]

IGNORE = {
    f"{SWIN_BLOCK}.attention.self.relative_position_index": "buffer recomputed from the window size",
    f"{SWIN_BLOCK}.attention.relative_position_bias.relative_position_index": "buffer recomputed from the window size",
    "embeddings.mask_token": "masked-image-modelling token, not used for classification",
}


def _prepare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``vit.``/``swin.`` prefix; tell ViT's from Swin's ``position_embeddings`` apart."""
    out = {}
    swin = any(k.startswith(("encoder.layers.", "swin.encoder.layers.")) for k in state)
    for k, v in state.items():
        for prefix in ("vit.", "swin."):
            if k.startswith(prefix):
                k = k[len(prefix):]
                break
        if swin and k == "embeddings.position_embeddings":
            k = "embeddings.swin_position_embeddings"  # the absolute embedding of Swin's ablation
        out[k] = v
    return out


def detect(keys: set[str]) -> bool:
    return any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys)


FORMAT = Format("transformers", "Hugging Face transformers ViT / Swin state dict", detect, RULES, IGNORE,
                prepare=_prepare)

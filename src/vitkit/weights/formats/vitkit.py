"""vitkit's own names: plain ViT keys are timm's, the hybrid stem is ``stem.*`` and Swin stages are
``stages.{s}`` with patch merging at the *start* of stages 1–3. The file format is safetensors with
metadata (``format=vitkit``, model name and arguments, preprocessing, labels; see :mod:`..io`)."""
from __future__ import annotations

from . import Format


def detect(keys: set[str]) -> bool:
    """vitkit-only names: Swin ``stages.N.blocks``, the hybrid's ``stem.conv``, or ViT's 2-D and relative
    position embeddings (``pos_embed_2d.*``, ``blocks.N.attn.rel_pos.*``; vitkit.layers.pos_embed)."""
    return (any(k.startswith("stages.") and ".blocks." in k for k in keys) or "stem.conv.weight" in keys
            or any(k.startswith("pos_embed_2d.") or ".attn.rel_pos." in k for k in keys))


FORMAT = Format("vitkit", "vitkit safetensors, or a vitkit model's state_dict", detect, rules=[], passthrough=True)

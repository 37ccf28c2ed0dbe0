"""vitkit's own names: plain ViT keys are timm's, the hybrid stem is ``stem.*`` and Swin stages are
``stages.{s}`` with patch merging at the *start* of stages 1–3. The file format is safetensors with
metadata (``format=vitkit``, model name and arguments, preprocessing, labels; see :mod:`..io`).

A ``vitkit pretrain`` checkpoint (:mod:`vitkit.train.pretrain`) holds its encoder under ``encoder.*``
and the pre-training parts (MAE decoder, MPP head, mask tokens) under ``pretrain.*``: the encoder's
tensors are read under the model's own names and the rest is dropped, each listed with the reason."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from . import Converted, Format

ENCODER, PRETRAIN = "encoder.", "pretrain."
PRETRAIN_DROPPED = ("self-supervised pre-training part (MAE decoder, MPP head or mask token), not part of the "
                    "encoder")


def detect(keys: set[str]) -> bool:
    """vitkit-only names: Swin ``stages.N.blocks``, the hybrid's ``stem.conv``, ViT's 2-D and relative
    position embeddings (``pos_embed_2d.*``, ``blocks.N.attn.rel_pos.*``; vitkit.layers.pos_embed), or a
    pre-training checkpoint's ``encoder.*`` + ``pretrain.*``."""
    return (any(k.startswith("stages.") and ".blocks." in k for k in keys) or "stem.conv.weight" in keys
            or any(k.startswith("pos_embed_2d.") or ".attn.rel_pos." in k for k in keys) or _is_pretraining(keys))


def _is_pretraining(keys: set[str] | Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(PRETRAIN) for k in keys) and any(k.startswith(ENCODER) for k in keys)


def split_pretraining(state: Mapping[str, torch.Tensor]) -> Converted:
    """A pre-training checkpoint's encoder under the model's names, its ``pretrain.*`` dropped; any
    other state dict as it is."""
    if not _is_pretraining(state):
        return Converted(state=dict(state))
    out = Converted()
    for k, v in state.items():
        if k.startswith(ENCODER):
            out.state[k[len(ENCODER):]] = v
        elif k.startswith(PRETRAIN):
            out.dropped[k] = PRETRAIN_DROPPED
        else:
            out.unknown.append(k)
    return out


@dataclass(frozen=True)
class VitkitFormat(Format):
    def convert(self, state: Mapping[str, torch.Tensor]) -> Converted:
        return split_pretraining(state)


FORMAT = VitkitFormat("vitkit", "vitkit safetensors, or a vitkit model's state_dict", detect, rules=[],
                      passthrough=True)

"""UperNet (Xiao et al., "Unified Perceptual Parsing", ECCV 2018, §4) on a dense backbone.

The Swin paper's ADE20K setup (§4.3): a pyramid pooling module (PPM, Zhao et al., PSPNet 2017) on
the last map, an FPN top-down path over all maps, every level upsampled to stride 4, concatenated
and fused by a 3×3 conv, then a 1×1 classifier; an auxiliary FCN head on the third map (loss
weight 0.4) helps training and is dropped at inference.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import DenseBackbone, create_backbone


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(ch)
    if kind == "gn":  # ≤ 32 groups of ≥ 2 channels, so a 1×1 pooled map still has a variance
        groups = max(g for g in range(1, min(32, max(ch // 2, 1)) + 1) if ch % g == 0)
        return nn.GroupNorm(groups, ch)
    raise ValueError(f"norm={kind!r} is not supported; choose 'bn' (the paper's, SyncBN under DDP "
                     "on GPU) or 'gn' (independent of the batch size)")


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, norm: str = "bn") -> None:
        super().__init__(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), _norm(norm, cout), nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PPM(nn.Module):
    """Pyramid pooling: average-pool to s×s for each scale, 1×1 conv, upsample, concatenate with
    the input, fuse with a 3×3 conv (PSPNet §3.2)."""

    def __init__(self, cin: int, ch: int, scales: Sequence[int] = (1, 2, 3, 6), norm: str = "bn") -> None:
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvNormAct(cin, ch, 1, norm))
                                       for s in scales])
        self.bottleneck = ConvNormAct(cin + len(scales) * ch, ch, 3, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return self.bottleneck(torch.cat([x] + [_resize(b(x), size) for b in self.branches], dim=1))


class UperNetHead(nn.Module):
    """Maps (strides s_0 < s_1 < …) → logits (B, K, H_0, W_0) at the finest map's size."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1, norm: str = "bn") -> None:
        super().__init__()
        self.ppm = PPM(in_channels[-1], channels, pool_scales, norm)
        self.lateral = nn.ModuleList([ConvNormAct(c, channels, 1, norm) for c in in_channels[:-1]])
        self.fpn = nn.ModuleList([ConvNormAct(channels, channels, 3, norm) for _ in in_channels[:-1]])
        self.fuse = ConvNormAct(len(in_channels) * channels, channels, 3, norm)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        lat = [conv(f) for conv, f in zip(self.lateral, feats)] + [self.ppm(feats[-1])]
        for i in range(len(lat) - 1, 0, -1):  # top-down: coarse maps added into finer ones
            lat[i - 1] = lat[i - 1] + _resize(lat[i], lat[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn, lat[:-1])] + [lat[-1]]
        size = outs[0].shape[-2:]
        x = self.fuse(torch.cat([outs[0]] + [_resize(o, size) for o in outs[1:]], dim=1))  # (B, L*ch, H_0, W_0)
        return self.classifier(self.dropout(x))


class FCNHead(nn.Module):
    """Auxiliary head: 3×3 conv → dropout → 1×1 classifier on one map."""

    def __init__(self, cin: int, num_classes: int, channels: int = 256, dropout: float = 0.1, norm: str = "bn") -> None:
        super().__init__()
        self.conv = ConvNormAct(cin, channels, 3, norm)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(x)))


class Segmenter(nn.Module):
    """Backbone + decode head (+ auxiliary head). ``forward(x)`` returns logits (B, K, H, W) at the
    input size; ``forward(x, return_aux=True)`` returns ``(logits, aux_logits or None)`` for the
    training loss. Inputs are padded (bottom/right) to the backbone's ``size_divisor``."""

    def __init__(self, backbone: DenseBackbone, head: nn.Module, aux_head: nn.Module | None = None,
                 aux_index: int = 2, num_classes: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head
        self.aux_index = aux_index
        self.num_classes = num_classes

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    def forward(self, x: torch.Tensor, return_aux: bool = False) -> Any:
        H, W = x.shape[-2:]
        d = self.backbone.size_divisor
        Hp, Wp = -(-H // d) * d, -(-W // d) * d
        if (Hp, Wp) != (H, W):
            x = F.pad(x, (0, Wp - W, 0, Hp - H))
        feats = self.backbone(x)
        out = _resize(self.head(feats), (Hp, Wp))[..., :H, :W]  # (B, K, H, W)
        if not return_aux:
            return out
        aux = None
        if self.aux_head is not None:
            aux = _resize(self.aux_head(feats[self.aux_index]), (Hp, Wp))[..., :H, :W]
        return out, aux


def build_segmenter(
    model: str,
    num_classes: int,
    *,
    channels: int = 512,
    aux_channels: int = 256,
    aux: bool = True,
    norm: str = "bn",
    weights: Any = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **model_overrides: Any,
) -> Segmenter:
    """UperNet on ``model``'s backbone (Swin §4.3: channels 512, PPM scales 1/2/3/6, aux FCN on the
    third map). ``weights`` is a classification checkpoint for the backbone."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
    backbone = create_backbone(model, weights=weights, **(backbone_kwargs or {}), **model_overrides)
    chans = backbone.out_channels
    head = UperNetHead(chans, num_classes, channels, norm=norm)
    aux_index = min(2, len(chans) - 1)
    aux_head = FCNHead(chans[aux_index], num_classes, aux_channels, norm=norm) if aux else None
    seg = Segmenter(backbone, head, aux_head, aux_index, num_classes)
    seg.pretrained_cfg = backbone.pretrained_cfg
    return seg

"""Backbone mode: multi-scale NCHW feature maps from a Swin or ViT classifier.

Swin (Liu et al., ICCV 2021, §4.2–4.3, and the official detection/segmentation code): the outputs
of the four stages, each through its own new LayerNorm, channels C·(1, 2, 4, 8), strides
4/8/16/32 (for 4×4 patches). Any input size works: the model pads to window multiples itself and
each stage's map is ⌈H / stride⌉ × ⌈W / stride⌉.

ViT (Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet),
ECCV 2022, §3): chosen blocks' tokens, each through a new LayerNorm, reshaped to a stride-P map;
a *simple pyramid* then makes maps at several scales from them (transposed convolutions up, max
pooling down) followed by 1×1 and 3×3 convolutions to ``out_channels``. With one block index, all
scales come from that block (ViTDet); with one index per scale, each scale reads its own block
(the BEiT/MAE UperNet setup).

The classifier's final norm and head are removed (the new norms replace them); classification
weights load into the inner model with :meth:`DenseBackbone.load_classification_weights`.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..models.base import ModelBase
from ..models.vit import _resolve_indices
from ..build import create_model
from ..weights import load_weights


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C, H, W)


class DenseBackbone(nn.Module):
    """Common face of the backbones: ``forward(x) -> list`` of (B, C_i, H_i, W_i) maps whose
    channels and strides are ``feature_info[i]["num_chs"]`` and ``["reduction"]``.

    ``size_divisor``: inputs whose sides are multiples of it give exact strides (Swin takes any
    size; ViT needs multiples of its patch stride, and the segmenter pads to it).
    ``dropped_prefixes``: classifier parameters the backbone deliberately does not keep.
    """

    body: nn.Module
    feature_info: list[dict[str, Any]]
    size_divisor: int = 1
    has_own_pyramid: bool = False  # its maps are already a pyramid of one width (no FPN needed on top)
    dropped_prefixes: tuple[str, ...] = ("head.", "norm.", "pre_logits.")

    @property
    def out_channels(self) -> list[int]:
        return [f["num_chs"] for f in self.feature_info]

    @property
    def strides(self) -> list[int]:
        return [f["reduction"] for f in self.feature_info]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.body.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return {f"body.{n}" for n in self.body.no_weight_decay()}

    def load_classification_weights(self, source: str | Path | Mapping[str, Any], *, strict: bool = True) -> Any:
        """Load a classification checkpoint (any format :func:`vitkit.load_weights` reads) into the
        inner model. The classifier's head, final norm and the blocks/stages the backbone dropped
        are skipped on purpose; with ``strict`` anything else missing or unexpected raises."""
        quiet = logging.getLogger(load_weights.__module__)
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # its non-strict warning lists the keys dropped on purpose here
        try:
            report = load_weights(self.body, source, strict=False)
        finally:
            quiet.setLevel(level)
        unexpected = [k for k in report.unexpected if not k.startswith(self.dropped_prefixes)]
        mismatched = list(getattr(report, "mismatched", []))
        if strict and (report.missing or unexpected or mismatched):
            raise ValueError(
                f"classification weights do not fit the backbone {getattr(self, 'model_name', '')}: "
                f"{len(mismatched)} of other shape {mismatched[:3]}, {len(report.missing)} missing "
                f"{report.missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}. Build the backbone "
                "with the model name and overrides the checkpoint was trained with, or pass strict=False"
            )
        report.unexpected = unexpected
        return report


class SwinBackbone(DenseBackbone):
    """Swin stages ``out_indices`` → new LayerNorm each → NCHW (Swin §4.2; official seg/det code)."""

    def __init__(self, body: ModelBase, out_indices: Sequence[int] = (0, 1, 2, 3)) -> None:
        super().__init__()
        self.out_indices = _resolve_indices(list(out_indices), body.num_stages)
        last = max(self.out_indices)
        body.reset_classifier(0)
        body.norm = nn.Identity()
        body.stages = body.stages[: last + 1]  # later stages would get no gradient
        body.num_stages = last + 1
        self.body = body
        self.dropped_prefixes = DenseBackbone.dropped_prefixes + tuple(
            f"stages.{s}." for s in range(last + 1, 8))
        info = [body.feature_info[s] for s in self.out_indices]
        self.norms = nn.ModuleList([nn.LayerNorm(f["num_chs"]) for f in info])
        self.feature_info = [dict(num_chs=f["num_chs"], reduction=f["reduction"], module=f"norms.{i}")
                             for i, f in enumerate(info)]
        self.size_divisor = 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.body.forward_intermediates(x, self.out_indices, output_fmt="NHWC")
        return [norm(m).permute(0, 3, 1, 2).contiguous() for norm, m in zip(self.norms, maps)]  # (B, C, H, W)


def _resample(dim: int, factor: float) -> tuple[nn.Module, int]:
    """ViTDet's scale step: transposed 2×2 convs (halving channels) to go up, max pooling down."""
    if factor == 1:
        return nn.Identity(), dim
    if factor < 1:
        k = round(1 / factor)
        return nn.MaxPool2d(kernel_size=k, stride=k, ceil_mode=True), dim
    steps = round(math.log2(factor))
    layers: list[nn.Module] = []
    for i in range(steps):
        layers.append(nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2))
        dim //= 2
        if i < steps - 1:
            layers += [LayerNorm2d(dim, eps=1e-6), nn.GELU()]
    return nn.Sequential(*layers), dim


class ViTBackbone(DenseBackbone):
    """Chosen ViT blocks → new LayerNorm → (B, D, H/P, W/P) maps → simple pyramid (ViTDet §3).

    ``scales`` are factors relative to the patch stride P: (4, 2, 1, 0.5) gives strides P/4 … 2P
    (4/8/16/32 for P = 16). ``indices`` is one block (all scales from it) or one block per scale.
    """

    def __init__(self, body: ModelBase, indices: Sequence[int] = (-1,),
                 scales: Sequence[float] = (4.0, 2.0, 1.0, 0.5), out_channels: int = 256) -> None:
        super().__init__()
        for f in scales:
            if f <= 0 or abs(math.log2(f) - round(math.log2(f))) > 1e-9:
                raise ValueError(f"ViT pyramid scales must be powers of two, got {tuple(scales)}")
        self.indices = _resolve_indices(list(indices), len(body.blocks))
        if len(self.indices) not in (1, len(scales)):
            raise ValueError(f"give one block index or one per scale: {len(self.indices)} indices "
                             f"for {len(scales)} scales")
        last = max(self.indices)
        body.reset_classifier(0)
        body.norm = nn.Identity()
        body.pre_logits = nn.Identity()
        body.blocks = body.blocks[: last + 1]
        self.body = body
        self.dropped_prefixes = DenseBackbone.dropped_prefixes + tuple(
            f"blocks.{b}." for b in range(last + 1, 64))
        dim, stride = body.embed_dim, body.stride
        self.norms = nn.ModuleList([nn.LayerNorm(dim, eps=1e-6) for _ in self.indices])
        self.scales = tuple(float(f) for f in scales)
        self.pyramid = nn.ModuleList()
        self.feature_info = []
        for i, f in enumerate(self.scales):
            up, d = _resample(dim, f)
            self.pyramid.append(nn.Sequential(
                up,
                nn.Conv2d(d, out_channels, 1, bias=False), LayerNorm2d(out_channels, eps=1e-6),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels, eps=1e-6),
            ))
            red = stride / f
            if red != int(red):
                raise ValueError(f"scale {f} of a stride-{stride} ViT gives a fractional stride {red}")
            self.feature_info.append(dict(num_chs=out_channels, reduction=int(red), module=f"pyramid.{i}"))
        self.size_divisor = stride * max(1, round(1 / min(self.scales)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        B, _, H, W = x.shape
        Gh, Gw = H // self.body.stride, W // self.body.stride
        n_pre = self.body.num_prefix_tokens
        tokens = self.body.forward_intermediates(x, self.indices, output_fmt="NLC")  # each (B, n_pre + N, D)
        maps = [norm(t[:, n_pre:]).transpose(1, 2).reshape(B, -1, Gh, Gw)  # (B, D, Gh, Gw)
                for norm, t in zip(self.norms, tokens)]
        return [level(maps[i if len(maps) > 1 else 0]) for i, level in enumerate(self.pyramid)]


def create_backbone(
    name: str,
    *,
    pretrained: bool | str = False,
    weights: str | Path | Mapping[str, Any] | None = None,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    vit_indices: Sequence[int] = (-1,),
    vit_scales: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
    vit_out_channels: int = 256,
    **overrides: Any,
) -> DenseBackbone:
    """Build a registered model as a dense backbone.

    ``weights``: a classification checkpoint loaded into the inner model (strict, head dropped).
    ``out_indices`` picks Swin stages; ``vit_*`` configure the ViT simple pyramid. Other keyword
    arguments override the model's variant row (``drop_path_rate=0.2``, ``embed_dim=48``, …).
    """
    body = create_model(name, pretrained=pretrained, **overrides)
    pyramid = getattr(body, "feature_pyramid", None)  # the model says how its features are laid out
    if pyramid == "hierarchical":
        backbone: DenseBackbone = SwinBackbone(body, out_indices)
    elif pyramid == "plain":
        backbone = ViTBackbone(body, vit_indices, vit_scales, vit_out_channels)
    else:
        raise ValueError(f"{name!r} ({type(body).__name__}) has no backbone mode; use a swin_* or vit_* model")
    backbone.pretrained_cfg = body.pretrained_cfg.copy()
    backbone.model_name = name
    if weights is not None:
        backbone.load_classification_weights(weights)
    return backbone

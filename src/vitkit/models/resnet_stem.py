"""ResNet "BiT" stem for the hybrid ViT (ViT §3.1 "Hybrid Architecture"; Kolesnikov et al., BiT).

Weight-standardised convolutions with GroupNorm(32), TensorFlow "SAME" padding (the official
weights were trained with it), post-activation bottleneck units; R50 with stages (3, 4, 9) gives a
stride-16 map of 1024 channels that the ViT reads as 1×1 patches.

Two numerics, same weights (``numerics``):

- ``"timm"`` (default; timm's port): kernel (w − mean) / sqrt(var + 1e-8), GroupNorm eps 1e-5;
- ``"jax"`` (the official JAX code that trained the .npz files): (w − mean) / (std + 1e-5), Flax
  GroupNorm eps 1e-6. Official R50+ViT weights loaded through :func:`vitkit.create_model` with a
  pretrained tag or file get this one; the outputs differ from timm's by ~1e-3 relative.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.fastpath import symbolic


def same_pad_total(size: int, kernel: int, stride: int) -> int:
    """Total "SAME" padding of one side: max((ceil(size / stride) − 1)·stride + kernel − size, 0).

    In integer arithmetic, as ``(−size) mod stride + kernel − stride`` (``(−size) mod stride`` is
    ceil(size / stride)·stride − size), which is never negative when kernel ≥ stride and never
    positive when the kernel is 1. A symbolic size (``torch.export`` with dynamic H×W) then stays a
    flat expression: ``math.ceil(size / stride)`` and ``max`` made every layer's size a nest of the
    previous one's (ceil of a true division inside a Max), so that the 50 layers of the R50 stem
    took the exporter's shape solver longer than 300 s."""
    pad = (-size) % stride + kernel - stride
    if kernel >= stride:
        return pad
    if kernel == 1:
        return 0
    return max(pad, 0)


def same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad like TensorFlow's "SAME": the output is ceil(size / stride), extra pixel bottom/right."""
    H, W = x.shape[-2:]
    ph, pw = same_pad_total(H, kernel, stride), same_pad_total(W, kernel, stride)
    if symbolic(H, W) or ph or pw:  # traced: no branch on the size (a zero pad is the identity)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)
    return x


NUMERICS = {  # weight-standardisation eps, whether it is added to the std (not the variance), GroupNorm eps
    "timm": (1e-8, False, 1e-5),
    "jax": (1e-5, True, 1e-6),
}


def _numerics(name: str) -> tuple[float, bool, float]:
    if name not in NUMERICS:
        raise ValueError(f"stem numerics {name!r} is not supported; choose one of {', '.join(NUMERICS)}")
    return NUMERICS[name]


class StdConv2d(nn.Conv2d):
    """Conv2d whose kernel is standardised per output channel (zero mean, unit variance) on use:
    (w − mean) / sqrt(var + eps), or (w − mean) / (std + eps) with ``eps_on_std``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, eps: float = 1e-8,
                 eps_on_std: bool = False) -> None:
        super().__init__(in_chs, out_chs, kernel_size, stride=stride, padding=0, bias=False)
        self.eps = eps
        self.eps_on_std = eps_on_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) / (torch.sqrt(var) + self.eps if self.eps_on_std else torch.sqrt(var + self.eps))
        x = same_pad(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, w, None, self.stride)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided) → 1×1, each GroupNorm'd; ReLU after the residual sum (post-activation)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, numerics: str = "timm") -> None:
        super().__init__()
        ws_eps, on_std, gn_eps = _numerics(numerics)
        mid = out_chs // 4
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential()
            self.downsample.add_module("conv", StdConv2d(in_chs, out_chs, 1, stride, ws_eps, on_std))
            self.downsample.add_module("norm", nn.GroupNorm(32, out_chs, eps=gn_eps))
        self.conv1 = StdConv2d(in_chs, mid, 1, 1, ws_eps, on_std)
        self.norm1 = nn.GroupNorm(32, mid, eps=gn_eps)
        self.conv2 = StdConv2d(mid, mid, 3, stride, ws_eps, on_std)
        self.norm2 = nn.GroupNorm(32, mid, eps=gn_eps)
        self.conv3 = StdConv2d(mid, out_chs, 1, 1, ws_eps, on_std)
        self.norm3 = nn.GroupNorm(32, out_chs, eps=gn_eps)
        nn.init.zeros_(self.norm3.weight)  # each unit starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class ResNetStem(nn.Module):
    """Root (7×7/2 conv → GN → ReLU → 3×3/2 max-pool) then bottleneck stages, widths 256·2^s."""

    def __init__(self, in_chans: int = 3, depths: tuple[int, ...] = (3, 4, 9), width: int = 64,
                 numerics: str = "timm") -> None:
        super().__init__()
        ws_eps, on_std, gn_eps = _numerics(numerics)
        self.numerics = numerics
        self.conv = StdConv2d(in_chans, width, 7, 2, ws_eps, on_std)
        self.norm = nn.GroupNorm(32, width, eps=gn_eps)
        self.stages = nn.ModuleList()
        in_chs = width
        for s, depth in enumerate(depths):
            out_chs = width * 4 * 2**s
            blocks = [Bottleneck(in_chs if b == 0 else out_chs, out_chs, stride=(1 if s == 0 else 2) if b == 0 else 1,
                                 numerics=numerics) for b in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
            in_chs = out_chs
        self.out_channels = in_chs
        self.stride = 4 * 2 ** (len(depths) - 1)
        for m in self.modules():
            if isinstance(m, StdConv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))  # (B, 64, H/2, W/2)
        x = F.max_pool2d(same_pad(x, 3, 2, value=float("-inf")), 3, 2)  # (B, 64, H/4, W/4)
        for stage in self.stages:
            x = stage(x)
        return x  # (B, 1024, H/16, W/16) for depths (3, 4, 9)

"""Transform presets (torchvision.transforms.v2) and batch-level Mixup/CutMix.

Train presets decide the geometric augmentation; RandAugment, horizontal flips and random erasing
are switched on by their own arguments, so a recipe reads like the paper's list:

- ``"imagenet"``: RandomResizedCrop(scale) + flip (Inception-style, Swin/DeiT recipes).
- ``"cifar"``: pad-and-crop (padding = size/8) + flip, for 32×32 sets trained from scratch.
- ``"digits"``: random shifts of ±size/14 px (zero padding), no flip (MNIST: a flipped 2 is no 2).
- ``"resize"``: resize only (the ViT fine-tuning recipe uses a random crop and flip: ``"imagenet"``
  with ``scale=(0.05, 1)`` in big_vision; ``"resize"`` is for linear probes and tests).

Eval: resize the shorter side to ``size / crop_pct`` then centre-crop ``size`` (crop_pct 1 = resize).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

PRESETS = ("imagenet", "cifar", "digits", "resize")
INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


def _interp(name: str) -> InterpolationMode:
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation={name!r} is not supported; choose one of {sorted(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


class ToNormalizedFloat:
    """uint8 image → float32 ``(x / 255 − mean) / std`` in one step: the same result as
    ``v2.ToDtype(float32, scale=True)`` + ``v2.Normalize``, without their per-call dispatch cost,
    which dominates on small (28-32 px) images."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(-1, 1, 1)
        self.shift = torch.tensor([m / s for m, s in zip(mean, std)]).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 image, got {x.dtype}")
        if x.shape[-3] != self.scale.shape[0]:
            raise ValueError(f"image has {x.shape[-3]} channels but mean/std have {self.scale.shape[0]}")
        return x.float().mul_(self.scale).sub_(self.shift)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Chain:
    """Apply callables in order (``v2.Compose`` without its per-call dispatch, which costs more than
    the work itself on 28-32 px images); ``transforms`` lists them, as in ``v2.Compose``."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return "Chain(" + ", ".join(repr(t) for t in self.transforms) + ")"


def to_uint8_tensor(x: Any) -> torch.Tensor:
    """PIL image or uint8 (C, H, W) tensor → uint8 (C, H, W) tensor (v2 ops treat it as an image)."""
    if isinstance(x, torch.Tensor):
        return x
    return v2.functional.pil_to_tensor(x)


class FitSize:
    """Resize the shorter side to ``size`` and centre-crop a square, only when the image is not
    already ``size``×``size`` (the common case for CIFAR and MNIST, where it then costs nothing)."""

    def __init__(self, size: int, interpolation: InterpolationMode) -> None:
        self.size, self.ops = size, Chain([v2.Resize(size, interpolation=interpolation, antialias=True),
                                           v2.CenterCrop(size)])

    def __call__(self, x: Any) -> Any:
        h, w = v2.functional.get_size(x)
        return x if h == w == self.size else self.ops(x)


class RandomShift:
    """Translate a (C, H, W) image by up to ``pixels`` in each direction, filling with zeros — the
    same as ``v2.RandomCrop(size, padding=pixels)`` at a tenth of its cost on small images."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pixels
        dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
        H, W = x.shape[-2:]
        out = torch.zeros_like(x)
        ys, yd = (dy - p, 0) if dy >= p else (0, p - dy)  # source / destination row offsets
        xs, xd = (dx - p, 0) if dx >= p else (0, p - dx)
        out[..., yd:H - ys, xd:W - xs] = x[..., ys:H - yd, xs:W - xd]
        return out


def _to_float(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [ToNormalizedFloat(mean, std)]


def train_transform(
    img_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    preset: str = "imagenet",
    interpolation: str = "bicubic",
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    randaugment: int = 0,
    randaugment_ops: int = 2,
    random_erasing: float = 0.0,
) -> Chain:
    """Training pipeline: PIL or uint8 tensor in → normalised float (C, size, size) out.

    ``randaugment`` is the magnitude M of RandAugment (0 = off; Swin/DeiT use M=9 with N=2 ops);
    ``random_erasing`` the probability of erasing a random box with Gaussian noise (Swin: 0.25).
    """
    mode = _interp(interpolation)
    ops: list[Any] = [to_uint8_tensor]
    if preset == "imagenet":
        ops.append(v2.RandomResizedCrop(img_size, scale=scale, interpolation=mode, antialias=True))
    elif preset == "cifar":
        ops += [FitSize(img_size, mode), v2.RandomCrop(img_size, padding=max(img_size // 8, 1), padding_mode="reflect")]
    elif preset == "digits":
        ops += [FitSize(img_size, mode), RandomShift(max(img_size // 14, 1))]  # ±2 px at 28
    elif preset == "resize":
        ops.append(FitSize(img_size, mode))
    else:
        raise ValueError(f"augmentation preset {preset!r} is unknown; choose one of {PRESETS}")
    if hflip > 0 and preset != "digits":
        ops.append(v2.RandomHorizontalFlip(hflip))
    if randaugment > 0:
        ops.append(v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment,
                                  interpolation=InterpolationMode.BILINEAR))  # bicubic: PIL only
    ops += _to_float(mean, std)
    if random_erasing > 0:
        ops.append(v2.RandomErasing(p=random_erasing, value="random"))
    return Chain(ops)


def eval_transform(img_size: int, *, mean: Sequence[float], std: Sequence[float],
                   interpolation: str = "bicubic", crop_pct: float = 1.0) -> Chain:
    """Evaluation pipeline: resize the shorter side to ``img_size / crop_pct``, centre-crop ``img_size``."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct={crop_pct} must be in (0, 1]; 0.875 or 0.9 are usual, 1.0 means no crop")
    if crop_pct == 1.0:
        return Chain([to_uint8_tensor, FitSize(img_size, _interp(interpolation)), *_to_float(mean, std)])
    resize = int(math.floor(img_size / crop_pct))
    return Chain([to_uint8_tensor, v2.Resize(resize, interpolation=_interp(interpolation), antialias=True),
                  v2.CenterCrop(img_size), *_to_float(mean, std)])


class MixupCutmix:
    """Batch-level Mixup (Zhang et al. 2018) and/or CutMix (Yun et al. 2019), one of the two per batch
    when both are on (the Swin/DeiT recipe: Mixup α=0.8, CutMix α=1.0, switch probability 0.5).

    Returns the mixed images and soft targets (B, K); label smoothing is applied by the loss
    (``F.cross_entropy(..., label_smoothing=ε)`` works on soft targets). Draws from the global torch
    RNG, whose state the checkpoints keep.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 prob: float = 1.0) -> None:
        ops = []
        if mixup_alpha > 0:
            ops.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            ops.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        if not ops:
            raise ValueError("MixupCutmix needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.num_classes = num_classes
        self.prob = prob
        self.op = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prob < 1.0 and torch.rand(()).item() >= self.prob:
            soft = torch.nn.functional.one_hot(targets, self.num_classes).to(images.dtype)
            return images, soft
        return self.op(images, targets)

"""Transform presets (torchvision.transforms.v2) and batch-level Mixup/CutMix.

Train presets decide the geometric augmentation; RandAugment, horizontal flips and random erasing
are switched on by their own arguments, so a recipe reads like the paper's list:

- ``"imagenet"``: RandomResizedCrop(scale) + flip (Inception-style, Swin/DeiT recipes).
- ``"cifar"``: pad-and-crop (padding = size/8) + flip, for 32×32 sets trained from scratch.
- ``"digits"``: small random translations/rotations, no flip (MNIST: a flipped 2 is no 2).
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


def _to_float(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


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
) -> v2.Compose:
    """Training pipeline: PIL or uint8 tensor in → normalised float (C, size, size) out.

    ``randaugment`` is the magnitude M of RandAugment (0 = off; Swin/DeiT use M=9 with N=2 ops);
    ``random_erasing`` the probability of erasing a random box with Gaussian noise (Swin: 0.25).
    """
    mode = _interp(interpolation)
    ops: list[Any] = [v2.ToImage()]
    if preset == "imagenet":
        ops.append(v2.RandomResizedCrop(img_size, scale=scale, interpolation=mode, antialias=True))
    elif preset == "cifar":
        ops += [v2.Resize(img_size, interpolation=mode, antialias=True), v2.CenterCrop(img_size),
                v2.RandomCrop(img_size, padding=max(img_size // 8, 1), padding_mode="reflect")]
    elif preset == "digits":
        ops += [v2.Resize(img_size, interpolation=mode, antialias=True), v2.CenterCrop(img_size),
                v2.RandomAffine(degrees=10, translate=(0.1, 0.1), interpolation=InterpolationMode.BILINEAR)]
    elif preset == "resize":
        ops += [v2.Resize(img_size, interpolation=mode, antialias=True), v2.CenterCrop(img_size)]
    else:
        raise ValueError(f"augmentation preset {preset!r} is unknown; choose one of {PRESETS}")
    if hflip > 0 and preset != "digits":
        ops.append(v2.RandomHorizontalFlip(hflip))
    if randaugment > 0:
        ops.append(v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment, interpolation=mode))
    ops += _to_float(mean, std)
    if random_erasing > 0:
        ops.append(v2.RandomErasing(p=random_erasing, value="random"))
    return v2.Compose(ops)


def eval_transform(img_size: int, *, mean: Sequence[float], std: Sequence[float],
                   interpolation: str = "bicubic", crop_pct: float = 1.0) -> v2.Compose:
    """Evaluation pipeline: resize the shorter side to ``img_size / crop_pct``, centre-crop ``img_size``."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct={crop_pct} must be in (0, 1]; 0.875 or 0.9 are usual, 1.0 means no crop")
    resize = int(math.floor(img_size / crop_pct))
    return v2.Compose([v2.ToImage(), v2.Resize(resize, interpolation=_interp(interpolation), antialias=True),
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

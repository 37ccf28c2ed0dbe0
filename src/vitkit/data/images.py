"""Image datasets' common ground: colour-mode conversion, safe loading, the base class, collation.

Every dataset in :mod:`vitkit.data` is an :class:`ImageDataset`: ``classes`` (names), ``targets``
(one int a sample), ``load(i)`` (the raw image in the dataset's mode, before any transform) and
``__getitem__`` returning ``(image, label)`` after the transform. An image that cannot be read comes
back as a :class:`Skipped` record instead of raising, and :func:`collate` drops it from the batch and
hands the record on, so that a corrupt file is counted and reported, never a crash mid-epoch.

Items may be addressed by ``i`` or by ``(i, seed)``: with a seed, the random transform runs under
``torch.manual_seed(seed)`` in a forked RNG, so a sample's augmentation depends only on the seed the
sampler gives it — not on the worker, the rank or the moment — which is what makes resumed and
distributed runs exact (see :class:`vitkit.data.sampler.ShardedSampler`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from .sampler import seeded_call, split_item

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
ALPHA_BACKGROUND = 255  # transparent pixels are composited onto white
MODES = ("RGB", "L")


class Skipped(NamedTuple):
    """An item that could not be read: its index, where it came from, and why."""

    index: int
    source: str
    error: str


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit and float greyscale (modes I;16*, I, F) → 8-bit L by scaling, not clipping."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        arr = arr.astype(np.uint32) >> 8
    elif img.mode == "I":
        arr = arr.astype(np.float64) / 257.0 if arr.max(initial=0) > 255 else arr
    else:  # F
        arr = arr.astype(np.float64) * (255.0 if arr.max(initial=0) <= 1.0 else 1.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))  # (H, W) uint8 → mode L


def convert_mode(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """Convert any PIL image to ``mode`` ("RGB" or "L").

    Palette images with transparency and RGBA/LA images are composited onto white (dropping alpha
    would expose whatever colour the transparent pixels happen to store); CMYK and YCbCr go through
    PIL's converters; 16-bit and float greyscale are rescaled to 8 bits.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not supported; choose one of {MODES}")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _high_bit_depth_to_l(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (ALPHA_BACKGROUND,) * 3 + (255,))
        img = Image.alpha_composite(bg, rgba).convert("RGB")
    return img if img.mode == mode else img.convert(mode)


def load_image(path: str, mode: str = "RGB") -> Image.Image:
    """Open, fully decode (so truncation shows here, not later) and convert an image file."""
    with Image.open(path) as im:
        im.load()
        return convert_mode(im, mode)


def convert_tensor_mode(x: torch.Tensor, mode: str) -> torch.Tensor:
    """uint8 (C, H, W) with C ∈ {1, 3} → the channel count of ``mode`` (ITU-R 601 luma for RGB→L)."""
    want = 3 if mode == "RGB" else 1
    if x.shape[0] == want:
        return x
    if want == 3:
        return x.expand(3, -1, -1).contiguous()
    w = torch.tensor([299, 587, 114], dtype=torch.int32).view(3, 1, 1)
    return ((x.to(torch.int32) * w).sum(0, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)


class ImageDataset(Dataset):
    """Base class: subclasses set ``classes``, ``targets`` and implement ``load`` and ``source``."""

    classes: list[str]
    targets: list[int]

    def __init__(self, transform: Callable[[Any], Any] | None = None, mode: str = "RGB") -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not supported; choose one of {MODES}")
        self.transform = transform
        self.mode = mode

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, i: int) -> Any:
        """The raw image ``i`` in ``self.mode`` (PIL image or uint8 (C, H, W) tensor); may raise."""
        raise NotImplementedError

    def source(self, i: int) -> str:
        """Where item ``i`` comes from (a path, or ``name[i]``), for messages."""
        return f"{type(self).__name__}[{i}]"

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Any, int] | Skipped:
        i, seed = split_item(item)
        try:
            img = self.load(i)
        except Exception as e:  # any decoding failure: report it, never crash the epoch
            return Skipped(i, self.source(i), f"{type(e).__name__}: {e}")
        if self.transform is not None:
            img = seeded_call(seed, self.transform, img)
        return img, self.targets[i]


class SubsetView(ImageDataset):
    """The items ``indices`` of ``base``, keeping its classes (a train/val carve-out)."""

    def __init__(self, base: ImageDataset, indices: Sequence[int], transform: Callable | None = None) -> None:
        super().__init__(transform if transform is not None else base.transform, base.mode)
        self.base = base
        self.indices = list(indices)
        self.classes = base.classes
        self.targets = [base.targets[j] for j in self.indices]

    def load(self, i: int) -> Any:
        return self.base.load(self.indices[i])

    def source(self, i: int) -> str:
        return self.base.source(self.indices[i])


def holdout_indices(targets: Sequence[int], fraction: float) -> tuple[list[int], list[int]]:
    """Deterministic stratified split: within each class, item j (in dataset order) is held out when
    ⌊(j+1)·f⌋ > ⌊j·f⌋, i.e. evenly spaced, no random numbers. Returns (kept, held_out)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction={fraction} must be in (0, 1), e.g. 0.1 to hold out 10% of each class")
    seen: dict[int, int] = {}
    kept, held = [], []
    for i, t in enumerate(targets):
        j = seen.get(t, 0)
        seen[t] = j + 1
        (held if int((j + 1) * fraction) > int(j * fraction) else kept).append(i)
    return kept, held


def collate(batch: list[Any]) -> dict[str, Any]:
    """Stack ``(image, label)`` items into ``{"image", "target", "skipped"}``; :class:`Skipped`
    items are left out of the tensors and listed under ``"skipped"``."""
    good = [b for b in batch if not isinstance(b, Skipped)]
    skipped = [b for b in batch if isinstance(b, Skipped)]
    if good:
        images, targets = default_collate(good)
    else:
        images, targets = torch.empty(0), torch.empty(0, dtype=torch.long)
    return {"image": images, "target": targets, "skipped": skipped}

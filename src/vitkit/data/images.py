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

import functools
import logging
import os
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


# the decoders PIL may use: it detects the format from the content, not the extension, and some of
# its other plugins hand the file to outside programs (EPS → Ghostscript), which a data set must not reach
PIL_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")


@functools.lru_cache(maxsize=1)
def _pil_formats() -> tuple[str, ...]:
    Image.init()  # registers every plugin, so that the names can be looked up (WEBP only where built)
    return tuple(f for f in PIL_FORMATS if f in Image.OPEN)


def open_image(path: Any) -> Image.Image:
    """``PIL.Image.open`` restricted to :data:`PIL_FORMATS` (whatever the file's name says): what every
    reader of user images in vitkit calls."""
    return Image.open(path, formats=_pil_formats())


def load_image(path: str, mode: str = "RGB") -> Image.Image:
    """Open, fully decode (so truncation shows here, not later) and convert an image file (one of
    :data:`PIL_FORMATS`, whatever its name says)."""
    with open_image(path) as im:
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


UNREADABLE_WARN_FRACTION = 0.01  # above this share of skipped images a run warns (below: an info line)
PROBE_IMAGES = 16  # images decoded per split before training, to catch a split that has none readable


def _likely_cause(path: str) -> str:
    """What an unreadable file most likely is, from its first bytes (for the error message)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        return f"files that cannot be opened ({type(e).__name__}: {e})"
    if not head:
        return "empty files (0 bytes): an interrupted copy, download or extraction; copy the data set again"
    if head.startswith(b"version https://git-lfs"):
        return ("Git LFS pointer files (small text files standing in for the images): the repository was cloned "
                "without its LFS content; run `git lfs pull` in it (after `git lfs install`), then train again")
    low = head.lower()
    if b"<html" in low or b"<!doctype" in low:
        return "HTML pages, not images: a download that returned a web page (a login or error page); download again"
    return "not decodable as images (truncated, another format under an image extension, or corrupt)"


def _root_of(ds: Any) -> str:
    while isinstance(ds, SubsetView):
        ds = ds.base
    root = getattr(ds, "root", None) or getattr(ds, "folder", None)
    return f" ({root})" if root is not None else ""


def check_readable(ds: Any, split: str, n: int = PROBE_IMAGES) -> None:
    """Decode up to ``n`` images spread evenly over ``ds`` and raise ValueError, naming the folder and
    the likely cause (Git LFS pointers, empty files, HTML pages), when none of them can be read: such a
    split would otherwise "train" on nothing (loss 0) or score nothing. Datasets without ``load`` are
    not checked; single unreadable files are left to the loop, which counts and reports them."""
    if not callable(getattr(ds, "load", None)) or len(ds) == 0:
        return
    m = min(n, len(ds))
    picks = sorted({round(k * (len(ds) - 1) / max(m - 1, 1)) for k in range(m)})
    errors = []
    for i in picks:
        try:
            ds.load(i)
            return
        except Exception as e:  # noqa: BLE001 - any decoding failure counts as unreadable
            errors.append((ds.source(i), f"{type(e).__name__}: {e}"))
    source, error = errors[0]
    cause = _likely_cause(source) if os.path.isfile(source) else "unreadable"
    raise ValueError(f"the {split} split{_root_of(ds)} has no readable image: none of the {len(picks)} images tried "
                     f"(spread over its {len(ds)}) could be decoded. They look like {cause}. First: {source} "
                     f"({error[:200]})")


def report_unreadable(split: str, skipped: int, total: int, when: str = "", stop: bool = True) -> None:
    """Say how many of ``total`` ``split`` images were unreadable and skipped: a warning with the
    share above :data:`UNREADABLE_WARN_FRACTION`, an info line below it, and (``stop``) a ValueError
    when every one was."""
    if skipped <= 0 or total <= 0:
        return
    where = f"{when}: " if when else ""
    if stop and skipped >= total:
        raise ValueError(f"{where}all {total} {split} images were unreadable; nothing was learned or measured. "
                         "Check the data folder (Git LFS pointers, empty or truncated files)")
    share = skipped / total
    msg = (f"{where}{skipped} of {total} {split} images ({100 * share:.1f}%) were unreadable and skipped "
           "(the warnings above name the first ones)")
    if share > UNREADABLE_WARN_FRACTION:
        log.warning("%s: more than %g%% of the split, so the results describe a different data set; repair or "
                    "remove those files", msg, 100 * UNREADABLE_WARN_FRACTION)
    else:
        log.info(msg)


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

"""Segmentation data: readers for ADE20K, CamVid and a generic images/labels layout; the
augmentations of the Swin/UperNet ADE20K recipe as ``torchvision.transforms.v2`` pipelines.

Layouts (labels are PNGs of class ids, one value per pixel, same stem as the image):

* generic: ``ROOT/{split}/images/*`` + ``ROOT/{split}/labels/*.png``, or
  ``ROOT/images/{split}/*`` + ``ROOT/labels/{split}/*.png``;
* CamVid (SegNet version, as in ``shared/data/camvid``): the generic layout with 11 classes and
  11 = void; a ``.tar`` of it is unpacked into a cache folder first;
* ADE20K (SceneParsing ``ADEChallengeData2016``): ``images/{training,validation}/*.jpg`` +
  ``annotations/{training,validation}/*.png``; 0 = "other" (ignored), 1..150 → classes 0..149.
"""
from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..data.sampler import seeded_call, split_item
from ..data.images import open_image  # PIL limited to image decoders (no EPS → Ghostscript)

log = logging.getLogger(__name__)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
IGNORE = 255

CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist")
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
                  (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct colours for ``n`` classes: the bits of the class id spread over R, G, B (the
    PASCAL VOC convention)."""
    out = []
    for k in range(n):
        r = g = b = 0
        c = k + 1
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


@dataclass
class SegSpec:
    """What a data set's labels mean: classes, colours, and which stored values map where."""

    num_classes: int
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    void_values: tuple[int, ...] = ()   # stored values that mean "ignore"
    reduce_zero_label: bool = False     # ADE20K: 0 is "other" (ignored), k → k − 1
    lut: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.class_names:
            self.class_names = tuple(f"class_{k}" for k in range(self.num_classes))
        if not self.palette:
            self.palette = tuple(default_palette(self.num_classes))
        lut = np.full(256, IGNORE, dtype=np.uint8)
        for v in range(256):
            k = v - 1 if self.reduce_zero_label else v
            if 0 <= k < self.num_classes and v not in self.void_values:
                lut[v] = k
        self.lut = lut


CAMVID = dict(num_classes=11, class_names=CAMVID_CLASSES, palette=CAMVID_PALETTE, void_values=(11,))
ADE20K = dict(num_classes=150, reduce_zero_label=True)


class SegFolder(Dataset):
    """(image, label) pairs from two folders matched by file stem; returns ``tv_tensors.Image``
    (3, H, W) uint8 and ``tv_tensors.Mask`` (H, W) int64 with ``IGNORE`` = 255, through
    ``transform(image, mask)`` when given. Stored label values that are not classes (and not
    declared void) become 255 and are counted in ``unknown_values``."""

    def __init__(self, images: str | Path, labels: str | Path, spec: SegSpec,
                 transform: Callable | None = None) -> None:
        images, labels = Path(images), Path(labels)
        for d in (images, labels):
            if not d.is_dir():
                raise FileNotFoundError(f"segmentation folder {d} does not exist")
        label_by_stem = {p.stem: p for p in labels.iterdir() if p.suffix.lower() == ".png"}
        self.items = [(p, label_by_stem[p.stem]) for p in sorted(images.iterdir())
                      if p.suffix.lower() in IMAGE_EXTS and p.stem in label_by_stem]
        if not self.items:
            raise FileNotFoundError(f"no image in {images} has a label PNG of the same name in {labels}")
        missing = sum(1 for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTS) - len(self.items)
        if missing:
            log.warning("%d images in %s have no label in %s and are skipped", missing, images, labels)
        self.spec = spec
        self.transform = transform
        self.unknown_values: set[int] = set()

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        img_path, lbl_path = self.items[i]
        with open_image(img_path) as im:
            img = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)  # (3, H, W)
        with open_image(lbl_path) as im:
            raw = np.asarray(im if im.mode in ("L", "P") else im.convert("L"))
        lab = self.spec.lut[raw]
        if raw.shape != tuple(img.shape[1:]):
            raise ValueError(f"label {lbl_path} is {raw.shape[1]}x{raw.shape[0]} but its image is "
                             f"{img.shape[2]}x{img.shape[1]}")
        bad = np.unique(raw[(lab == IGNORE) & (raw != IGNORE)])
        bad = set(bad.tolist()) - set(self.spec.void_values) - ({0} if self.spec.reduce_zero_label else set())
        if bad - self.unknown_values:
            self.unknown_values |= bad
            log.warning("label values %s in %s are not classes 0..%d: treated as ignored",
                        sorted(bad), lbl_path.name, self.spec.num_classes - 1)
        return tv_tensors.Image(img), tv_tensors.Mask(torch.from_numpy(lab.astype(np.int64)))

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Item ``i``, or ``(i, seed)``: the random transform then runs under that seed (training
        through :class:`vitkit.data.sampler.ShardedSampler`, so a resumed run augments alike)."""
        i, seed = split_item(item)
        img, mask = self.load(i)
        if self.transform is not None:
            img, mask = seeded_call(seed, self.transform, img, mask)
        return img, mask


def unpack_tar(path: str | Path, cache: str | Path = "/tmp/vitkit-data") -> Path:
    """Unpack a data set archive once into ``cache`` (never into the repository); returns the
    folder it unpacked into."""
    path, cache = Path(path), Path(cache)
    marker = cache / f".{path.name}.done"
    if not marker.exists():
        cache.mkdir(parents=True, exist_ok=True)
        log.info("unpacking %s into %s", path, cache)
        with tarfile.open(path) as tar:
            tar.extractall(cache, filter="data")
        marker.touch()
    return cache


def _split_dirs(root: Path, split: str) -> tuple[Path, Path] | None:
    for images, labels in ((root / split / "images", root / split / "labels"),
                           (root / "images" / split, root / "labels" / split)):
        if images.is_dir() and labels.is_dir():
            return images, labels
    return None


def detect_format(root: Path) -> str:
    if (root / "ADEChallengeData2016").is_dir() or (root / "annotations" / "training").is_dir():
        return "ade20k"
    if (root / "camvid").is_dir() or root.name == "camvid":
        return "camvid"
    return "folder"


def open_segmentation(data: str | Path, split: str, *, fmt: str = "auto", num_classes: int = 0,
                      transform: Callable | None = None, cache: str | Path = "/tmp/vitkit-data") -> SegFolder:
    """A split (``train``/``val``) of a segmentation data set at ``data`` (folder or ``.tar``).

    ``fmt``: ``auto``, ``ade20k``, ``camvid`` or ``folder`` (needs ``num_classes``)."""
    root = Path(data)
    if root.is_file() and ".tar" in root.name:
        root = unpack_tar(root, cache)
    if not root.exists():
        raise FileNotFoundError(f"segmentation data {root} does not exist")
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt == "ade20k":
        root = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
        name = {"train": "training", "val": "validation"}.get(split, split)
        return SegFolder(root / "images" / name, root / "annotations" / name, SegSpec(**ADE20K), transform)
    if fmt == "camvid":
        root = root / "camvid" if (root / "camvid").is_dir() else root
        spec = SegSpec(**CAMVID)
    elif fmt == "folder":
        if num_classes < 1:
            raise ValueError("a generic images/labels folder needs num_classes (e.g. num_classes=21)")
        spec = SegSpec(num_classes=num_classes)
    else:
        raise ValueError(f"data format {fmt!r} is not supported; choose auto, ade20k, camvid or folder")
    dirs = _split_dirs(root, split)
    if dirs is None:
        raise FileNotFoundError(f"no {split!r} split under {root}: expected {split}/images + {split}/labels "
                                f"or images/{split} + labels/{split}")
    return SegFolder(*dirs, spec, transform)


# ----------------------------------------------------------------------------- transforms
class RandomScale(v2.Transform):
    """Resize (aspect kept) so the image fits in ``base_size`` (H, W) times r, r uniform in
    ``ratio_range`` — mmseg's ``Resize(img_scale, ratio_range)``. Labels use nearest neighbours.
    (``v2.ScaleJitter`` reads its target as (W, H), hence this explicit version.)"""

    def __init__(self, base_size: Sequence[int], ratio_range: Sequence[float] = (0.5, 2.0)) -> None:
        super().__init__()
        self.base_size = (int(base_size[0]), int(base_size[1]))
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))

    def make_params(self, flat_inputs: list) -> dict:
        H, W = v2.query_size(flat_inputs)
        lo, hi = self.ratio_range
        r = lo + float(torch.rand(())) * (hi - lo)
        s = min(self.base_size[0] / H, self.base_size[1] / W) * r
        return dict(size=[max(1, round(H * s)), max(1, round(W * s))])

    def transform(self, inpt, params: dict):
        return self._call_kernel(v2.functional.resize, inpt, size=params["size"], antialias=True)


def train_transform(crop: Sequence[int], base_size: Sequence[int], scale_range: Sequence[float] = (0.5, 2.0),
                    hflip: float = 0.5, photometric: bool = True, mean: Sequence[float] = (0.485, 0.456, 0.406),
                    std: Sequence[float] = (0.229, 0.224, 0.225)) -> v2.Compose:
    """Random scale (fit into ``base_size`` × r, r ∈ ``scale_range``, aspect kept), random crop
    (padded with 0 / ignore when smaller), horizontal flip, photometric distortion (brightness,
    contrast, saturation, hue, each with probability ½), normalisation — the UperNet recipe."""
    ops = [RandomScale(base_size, scale_range),
           v2.RandomCrop(tuple(crop), pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}),
           v2.RandomHorizontalFlip(hflip)]
    if photometric:
        ops.append(v2.RandomPhotometricDistort(p=0.5))
    ops += [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


class EvalTransform:
    """Normalise the image (optionally resized to fit ``resize``, aspect kept); the label keeps its
    original size, so predictions are scored at full resolution."""

    def __init__(self, resize: Sequence[int] | None = None, mean: Sequence[float] = (0.485, 0.456, 0.406),
                 std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        self.resize = tuple(resize) if resize else None
        self.norm = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resize:
            H, W = img.shape[-2:]
            r = min(self.resize[0] / H, self.resize[1] / W)
            img = v2.functional.resize(img, [round(H * r), round(W * r)], antialias=True)
        return self.norm(img), mask


def collate_pad(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images and labels, padding to the largest (image 0, label ``IGNORE``)."""
    H = max(b[0].shape[-2] for b in batch)
    W = max(b[0].shape[-1] for b in batch)
    Hl = max(b[1].shape[-2] for b in batch)
    Wl = max(b[1].shape[-1] for b in batch)
    imgs = batch[0][0].new_zeros(len(batch), batch[0][0].shape[0], H, W)
    labs = torch.full((len(batch), Hl, Wl), IGNORE, dtype=torch.long)
    for i, (im, lb) in enumerate(batch):
        imgs[i, :, : im.shape[-2], : im.shape[-1]] = im
        labs[i, : lb.shape[-2], : lb.shape[-1]] = lb
    return imgs.as_subclass(torch.Tensor), labs

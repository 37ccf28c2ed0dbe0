"""Detection data: COCO-format annotation files (pycocotools) and YOLO-style text labels.

Every reader returns ``(image, target)`` with ``image`` a ``tv_tensors.Image`` (3, H, W) uint8 and
``target`` a dict: ``boxes`` (``tv_tensors.BoundingBoxes``, XYXY pixels), ``labels`` (int64,
1..K; 0 is torchvision's background), ``masks`` ((N, H, W) uint8 ``tv_tensors.Mask``, when the
data has polygons/RLE), ``iscrowd``, ``area``, ``image_id`` — after ``transforms(image, target)``.

YOLO layout: ``ROOT/images/{split}/*.jpg`` + ``ROOT/labels/{split}/*.txt``, one object a line,
``class cx cy w h`` (box) or ``class x1 y1 x2 y2 …`` (polygon), normalised to [0, 1], class ids
from 0 (an image without a .txt has no objects).
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..data.sampler import seeded_call, split_item
from .seg_data import IMAGE_EXTS
from ..data.images import open_image  # PIL limited to image decoders (no EPS → Ghostscript)

log = logging.getLogger(__name__)

COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)


def _read_rgb(path: Path) -> torch.Tensor:
    with open_image(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)  # (3, H, W)


def _pack(img: torch.Tensor, boxes: Any, labels: Any, masks: np.ndarray | None, image_id: int,
          iscrowd: Any = None, area: Any = None) -> tuple[tv_tensors.Image, dict[str, Any]]:
    H, W = img.shape[-2:]
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    target: dict[str, Any] = dict(
        boxes=tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(H, W)),
        labels=torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
        image_id=image_id,
        iscrowd=torch.as_tensor(np.zeros(len(boxes), np.int64) if iscrowd is None else np.asarray(iscrowd, np.int64)),
    )
    if masks is not None:
        target["masks"] = tv_tensors.Mask(torch.from_numpy(masks.reshape(-1, H, W)))
    if area is None:
        area = (target["masks"].flatten(1).sum(1).float() if masks is not None
                else (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    target["area"] = torch.as_tensor(area, dtype=torch.float32)
    return tv_tensors.Image(img), target


class YoloDetection(Dataset):
    """YOLO-style labels (boxes or polygons). ``masks``: rasterise polygons into instance masks
    (``None``: when the labels hold polygons)."""

    def __init__(self, root: str | Path, split: str = "train", *, class_names: Sequence[str] | None = None,
                 masks: bool | None = None, transforms: Callable | None = None) -> None:
        root = Path(root)
        self.image_dir, self.label_dir = root / "images" / split, root / "labels" / split
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"no images/{split} folder under {root} (YOLO layout: images/{split}/*.jpg "
                                    f"+ labels/{split}/*.txt)")
        self.images = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not self.images:
            raise FileNotFoundError(f"{self.image_dir} holds no images")
        self.objects = [self._parse(self.label_dir / f"{p.stem}.txt") for p in self.images]
        has_poly = any(len(o[1]) > 4 for objs in self.objects for o in objs)
        self.masks = has_poly if masks is None else masks
        if self.masks and not has_poly:
            raise ValueError(f"masks=True but the labels under {self.label_dir} are boxes, not polygons")
        top = max((o[0] for objs in self.objects for o in objs), default=-1)
        self.class_names = tuple(class_names) if class_names else (COCO80 if top < 80 else
                                                                   tuple(f"class_{k}" for k in range(top + 1)))
        if top >= len(self.class_names):
            raise ValueError(f"class id {top} in {self.label_dir} but only {len(self.class_names)} class names")
        self.num_classes = len(self.class_names)
        self.transforms = transforms

    @staticmethod
    def _parse(path: Path) -> list[tuple[int, list[float]]]:
        if not path.exists():
            return []
        out = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            vals = line.split()
            if not vals:
                continue
            coords = [float(v) for v in vals[1:]]
            if len(coords) != 4 and (len(coords) < 6 or len(coords) % 2):
                raise ValueError(f"{path}:{n}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 …', "
                                 f"got {len(coords)} numbers")
            out.append((int(vals[0]), coords))
        return out

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        img = _read_rgb(self.images[i])
        H, W = img.shape[-2:]
        boxes, labels, masks = [], [], []
        for cls, c in self.objects[i]:
            if len(c) == 4:
                cx, cy, w, h = c[0] * W, c[1] * H, c[2] * W, c[3] * H
                box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
                poly = [(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])]
            else:
                poly = [(x * W, y * H) for x, y in zip(c[0::2], c[1::2])]
                xs, ys = [p[0] for p in poly], [p[1] for p in poly]
                box = [min(xs), min(ys), max(xs), max(ys)]
            boxes.append(box)
            labels.append(cls + 1)
            if self.masks:
                canvas = Image.new("L", (W, H), 0)
                ImageDraw.Draw(canvas).polygon(poly, fill=1)
                masks.append(np.asarray(canvas))
        m = (np.stack(masks) if masks else np.zeros((0, H, W), np.uint8)) if self.masks else None
        return _pack(img, boxes, labels, m, image_id=i)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Any, dict[str, Any]]:
        return _transformed(self, item)


class CocoDetection(Dataset):
    """A COCO instances file: category ids are mapped to labels 1..K in id order; ``masks`` from
    polygons/RLE; crowd regions kept with ``iscrowd`` = 1 (the evaluator ignores matches to them;
    training drops them)."""

    def __init__(self, images: str | Path, annotations: str | Path, *, masks: bool = True,
                 transforms: Callable | None = None, skip_empty: bool = False) -> None:
        from ..extras import require

        COCO = require("pycocotools.coco", "reading a COCO annotation file").COCO

        self.image_dir = Path(images)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(annotations))
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_of = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.class_names = tuple(self.coco.loadCats(c)[0]["name"] for c in self.cat_ids)
        self.num_classes = len(self.cat_ids)
        ids = sorted(self.coco.getImgIds())
        if skip_empty:
            ids = [i for i in ids if self.coco.getAnnIds(imgIds=i, iscrowd=False)]
        self.ids = ids
        self.masks = masks
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        img_id = self.ids[i]
        info = self.coco.loadImgs(img_id)[0]
        img = _read_rgb(self.image_dir / info["file_name"])
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=img_id))
                if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        masks = None
        if self.masks:
            H, W = img.shape[-2:]
            masks = (np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, H, W), np.uint8))
        return _pack(img, boxes, [self.label_of[a["category_id"]] for a in anns], masks, img_id,
                     [a.get("iscrowd", 0) for a in anns], [a["area"] for a in anns])

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Any, dict[str, Any]]:
        return _transformed(self, item)


def _transformed(ds: Any, item: int | tuple[int, int]) -> tuple[Any, dict[str, Any]]:
    """Item ``i``, or ``(i, seed)``: the random transforms then run under that seed (training
    through :class:`vitkit.data.sampler.ShardedSampler`, so a resumed run augments alike)."""
    i, seed = split_item(item)
    img, target = ds.load(i)
    return seeded_call(seed, ds.transforms, img, target) if ds.transforms else (img, target)


class RandomAbsoluteCrop(v2.Transform):
    """A random crop of h × w pixels, h and w drawn uniformly from [lo, hi] (each at most the image's
    side): mmdetection's ``RandomCrop(crop_type="absolute_range")``. Boxes and masks are cropped with
    the image; boxes left empty are removed later (``SanitizeBoundingBoxes``), and a crop with no
    box left is kept (an image of background only)."""

    def __init__(self, lo: int, hi: int) -> None:
        super().__init__()
        if not 0 < lo <= hi:
            raise ValueError(f"crop size range ({lo}, {hi}) must satisfy 0 < lo <= hi")
        self.lo, self.hi = int(lo), int(hi)

    def make_params(self, flat_inputs: list) -> dict:
        H, W = v2.query_size(flat_inputs)
        h = int(torch.randint(min(H, self.lo), min(H, self.hi) + 1, ()))
        w = int(torch.randint(min(W, self.lo), min(W, self.hi) + 1, ()))
        top = int(torch.randint(0, H - h + 1, ()))
        left = int(torch.randint(0, W - w + 1, ()))
        return dict(top=top, left=left, height=h, width=w)

    def transform(self, inpt, params: dict):
        return self._call_kernel(v2.functional.crop, inpt, **params)


def detection_transform(train: bool, hflip: float = 0.5, crop_policy: float = 0.0,
                        crop_resize: Sequence[int] = (400, 500, 600), crop_size: Sequence[int] = (384, 600),
                        max_size: int = 1333) -> v2.Compose:
    """Flip (training) and scale to [0, 1]; the multi-scale resize and normalisation happen inside
    the R-CNN (``min_size``/``max_size``). Crowd boxes are dropped for training.

    ``crop_policy`` > 0 adds the Swin paper's 3× augmentation (DETR's, via mmdetection's
    ``AutoAugment``): with that probability the image is first resized to a short side drawn from
    ``crop_resize`` (long side ≤ ``max_size``) and cropped to a random size in ``crop_size``; the
    R-CNN's multi-scale resize then applies to the crop as it does to the other images."""
    ops: list[Any] = []
    if train:
        ops += [DropCrowd(), v2.RandomHorizontalFlip(hflip)]
        if crop_policy > 0:
            ops.append(v2.RandomApply([v2.RandomShortestSize(list(crop_resize), max_size=max_size, antialias=True),
                                       RandomAbsoluteCrop(*crop_size)], p=crop_policy))
    ops += [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]
    if train:
        ops.append(v2.SanitizeBoundingBoxes(min_size=1.0))  # crop clamps the boxes; this drops the empty ones
    return v2.Compose(ops)


class DropCrowd:
    def __call__(self, img: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        keep = target["iscrowd"] == 0
        if bool(keep.all()):
            return img, target
        t = dict(target)
        for k in ("boxes", "labels", "masks", "iscrowd", "area"):
            if k in t:
                t[k] = tv_tensors.wrap(t[k][keep], like=t[k]) if isinstance(t[k], tv_tensors.TVTensor) else t[k][keep]
        return img, t


def open_detection(data: str | Path, split: str, *, fmt: str = "auto", masks: bool | None = None,
                   transforms: Callable | None = None) -> YoloDetection | CocoDetection:
    """A split of a detection data set: YOLO layout, or COCO (``annotations/instances_{split}*.json``
    beside ``{split}*/`` or ``images/{split}``)."""
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"detection data folder {root} does not exist")
    anns = sorted((root / "annotations").glob(f"instances_{split}*.json")) if (root / "annotations").is_dir() else []
    fmt = ("coco" if anns else "yolo") if fmt == "auto" else fmt
    if fmt == "yolo":
        return YoloDetection(root, split, masks=masks, transforms=transforms)
    if fmt != "coco":
        raise ValueError(f"detection format {fmt!r} is not supported; choose auto, coco or yolo")
    if not anns:
        raise FileNotFoundError(f"no annotations/instances_{split}*.json under {root}")
    ann = anns[0]
    year = ann.stem.removeprefix(f"instances_{split}")
    for images in (root / f"{split}{year}", root / "images" / f"{split}{year}", root / "images" / split):
        if images.is_dir():
            return CocoDetection(images, ann, masks=masks is not False, transforms=transforms,
                                 skip_empty=split == "train")
    raise FileNotFoundError(f"no image folder for {ann.name} under {root} (tried {split}{year}/, images/{split}{year}/)")


def collate_detection(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Lists of plain tensors, as torchvision's R-CNNs take them."""
    images = [b[0].as_subclass(torch.Tensor) for b in batch]
    targets = [{k: (v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v) for k, v in b[1].items()}
               for b in batch]
    return images, targets

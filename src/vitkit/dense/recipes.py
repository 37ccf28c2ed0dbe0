"""Dense-task recipes: typed configs whose builders say how to run them, how long they take and
what they reach. Any field can be overridden from the command line as ``field=value``.

The paper's settings (Swin §4.2–4.3, REFERENCE.md): UperNet on ADE20K with AdamW 6e-5, weight
decay 0.01, 160k iterations, 1500 warm-up, batch 16, 512×512 crops; Mask R-CNN on COCO with AdamW
1e-4, weight decay 0.05, batch 16, 3× schedule (36 epochs, ×0.1 at 27 and 33), multi-scale
training with the short side in 480–800 and the long side ≤ 1333.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class SegRecipe:
    """Semantic segmentation with UperNet (fields are the paper's ADE20K setup unless set)."""

    model: str = "swin_tiny_patch4_window7_224"
    model_kwargs: dict = field(default_factory=lambda: {"drop_path_rate": 0.3})  # create_model overrides
    backbone_kwargs: dict = field(default_factory=dict)   # create_backbone options (vit_indices, …)
    weights: str = ""                   # classification checkpoint for the backbone
    data: str = ""                      # folder or .tar (ADE20K, CamVid, images/labels)
    data_format: str = "auto"           # auto | ade20k | camvid | folder
    num_classes: int = 0                # 0: from the data format
    crop_size: tuple[int, ...] = (512, 512)
    base_size: tuple[int, ...] = (512, 2048)   # random scale fits the image into base_size × r (H, W)
    scale_range: tuple[float, ...] = (0.5, 2.0)
    test_resize: bool = True            # evaluate at the image resized to fit base_size
    hflip: float = 0.5
    photometric: bool = True
    head_channels: int = 512
    aux_channels: int = 256
    aux_weight: float = 0.4             # 0 drops the auxiliary FCN head
    norm: str = "bn"                    # bn | gn
    iters: int = 160_000
    batch_size: int = 16                # global: split over the DDP processes
    lr: float = 6e-5
    weight_decay: float = 0.01
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    clip_grad: float = 0.0              # 0: no clipping
    eval_interval: int = 16_000         # iterations
    eval_mode: str = "whole"            # whole (the official Swin UperNet config) | slide
    eval_crop: tuple[int, ...] = (512, 512)
    eval_stride: tuple[int, ...] = (341, 341)
    eval_batch_size: int = 1
    log_interval: int = 50
    workers: int = 2
    seed: int = 0
    threads: int = 0                    # 0: torch's default
    amp: bool = True                    # bf16 autocast on CUDA (ignored on CPU)
    grad_checkpointing: bool = False
    parallel: str = "ddp"               # under torchrun: ddp | fsdp (weights, gradients, optimiser state sharded per block)
    out: str = "runs/segment"


@dataclass
class DetRecipe:
    """Object detection / instance segmentation with Mask (or Faster) R-CNN + FPN."""

    model: str = "swin_tiny_patch4_window7_224"
    model_kwargs: dict = field(default_factory=lambda: {"drop_path_rate": 0.2})
    backbone_kwargs: dict = field(default_factory=dict)
    weights: str = ""
    data: str = ""                      # COCO folder (annotations/ + images) or YOLO folder
    data_format: str = "auto"           # auto | coco | yolo
    kind: str = "mask_rcnn"             # mask_rcnn | faster_rcnn
    min_size: tuple[int, ...] = tuple(range(480, 801, 32))  # short side, one drawn per batch
    max_size: int = 1333
    fpn_channels: int = 256
    box_head_dim: int = 1024
    mask_head_dim: int = 256
    epochs: int = 36
    batch_size: int = 16                # global
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_iters: int = 500
    warmup_ratio: float = 1e-3
    lr_steps: tuple[int, ...] = (27, 33)   # epochs where the LR is multiplied by lr_gamma
    lr_gamma: float = 0.1
    clip_grad: float = 0.0
    hflip: float = 0.5
    crop_policy: float = 0.5            # probability of the resize + random-crop branch (Swin 3×); 0: off
    crop_resize: tuple[int, ...] = (400, 500, 600)  # short side before that crop
    crop_size: tuple[int, ...] = (384, 600)         # crop height and width drawn from this range
    eval_interval: int = 1              # epochs
    eval_on_train: bool = False         # also score the training split (overfitting checks)
    score_thresh: float = 0.05
    detections_per_img: int = 100
    log_interval: int = 20
    workers: int = 2
    seed: int = 0
    threads: int = 0
    amp: bool = True
    grad_checkpointing: bool = False
    parallel: str = "ddp"               # under torchrun: ddp | fsdp (weights, gradients, optimiser state sharded per block)
    out: str = "runs/detect"


# ------------------------------------------------------------------------------ named recipes
def upernet_swin_tiny_ade20k() -> SegRecipe:
    """The Swin paper's ADE20K UperNet + Swin-T (Table 3: 44.5 mIoU single-scale with ImageNet-1K
    weights). Command: ``torchrun --nproc_per_node=8 -m vitkit.cli segment train --recipe
    upernet_swin_tiny_ade20k data=/data/ade20k weights=swin_tiny_patch4_window7_224.pth``.
    Time: about a day on 8 V100s (paper); not feasible on a CPU."""
    return SegRecipe()


def upernet_camvid_cpu() -> SegRecipe:
    """CamVid (11 classes, 367 train / 101 val frames at 480×360) from scratch on a CPU: a narrow
    Swin (C = 32, depths 2/2/2/2, heads 1/2/4/8, window 7, 4×4 patches) with a 96-channel UperNet,
    192×192 crops, batch 8, 1600 iterations (~35 epochs), whole-image evaluation at 480×360.
    Command: ``vitkit segment train --recipe upernet_camvid_cpu
    data=../shared/data/camvid/camvid-trainval.tar``. Measured (docs/dense.md): val mIoU 0.364,
    pixel accuracy 0.808; 47 CPU-minutes on 1 thread (2 h 15 min wall on a heavily shared 2-core
    CPU)."""
    return SegRecipe(
        model="swin_tiny_patch4_window7_224",
        model_kwargs=dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), drop_path_rate=0.1),
        data_format="camvid", crop_size=(192, 192), base_size=(360, 480), test_resize=False,
        head_channels=96, aux_channels=64, iters=1600, batch_size=8, lr=6e-4, warmup_iters=100,
        eval_interval=400, eval_mode="whole", log_interval=25, workers=1, threads=1, out="runs/camvid")


def mask_rcnn_swin_tiny_coco_3x() -> DetRecipe:
    """The Swin paper's COCO Mask R-CNN + Swin-T, 3× schedule (Table 2(b): 46.0 box AP, 41.6 mask
    AP): multi-scale resize (short side 480–800, long ≤ 1333), and half of the images first
    resized to a short side of 400/500/600 and randomly cropped to 384–600 pixels a side (the
    "AutoAugment" policy of DETR the paper's 3× runs use). Command: ``torchrun --nproc_per_node=8 -m vitkit.cli
    detect train --recipe mask_rcnn_swin_tiny_coco_3x data=/data/coco weights=swin_tiny.pth``.
    Time: about two days on 8 V100s; not feasible on a CPU."""
    return DetRecipe()


def mask_rcnn_coco8_smoke() -> DetRecipe:
    """Smoke run on coco8-seg (4 train / 4 val images): a narrow Swin, 320-pixel images, small RoI
    heads, trained long enough to overfit the 4 training images. It proves the pipeline (data,
    losses, AP, overlays), not accuracy. Command: ``vitkit detect train --recipe
    mask_rcnn_coco8_smoke data=../shared/data/coco8/coco8-seg``. Measured (docs/dense.md): train box
    AP 0.80 / mask AP 0.65 after 150 epochs, 19 CPU-minutes (88 min wall on a shared 2-core CPU);
    validation AP 0 by construction (coco8's val classes are absent from its 4 training images)."""
    return DetRecipe(
        model="swin_tiny_patch4_window7_224",
        model_kwargs=dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16), drop_path_rate=0.0),
        min_size=(288, 320, 352), max_size=480, fpn_channels=96, box_head_dim=256, mask_head_dim=96,
        epochs=150, batch_size=4, lr=3e-4, weight_decay=0.05, warmup_iters=20, lr_steps=(120,), crop_policy=0.0,
        eval_interval=50, eval_on_train=True, log_interval=10, workers=0, threads=1, out="runs/coco8")


SEG_RECIPES: dict[str, Callable[[], SegRecipe]] = {
    "upernet_swin_tiny_ade20k": upernet_swin_tiny_ade20k,
    "upernet_camvid_cpu": upernet_camvid_cpu,
}
DET_RECIPES: dict[str, Callable[[], DetRecipe]] = {
    "mask_rcnn_swin_tiny_coco_3x": mask_rcnn_swin_tiny_coco_3x,
    "mask_rcnn_coco8_smoke": mask_rcnn_coco8_smoke,
}


def get_recipe(name: str, table: dict[str, Callable[[], Any]]) -> Any:
    if name not in table:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]()


# ------------------------------------------------------------------------------ overrides
def _parse(text: str, kind: Any, name: str) -> Any:
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            low = text.lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return low in ("1", "true", "yes", "on")
        if kind in (int, float, str):
            return kind(text)
        if origin is tuple:
            elem = typing.get_args(kind)[0]
            parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
            return tuple(elem(p.strip()) for p in parts)
        if kind is dict or origin is dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
    except ValueError:
        pass
    raise ValueError(f"bad value {text!r} for {name} (expected {getattr(kind, '__name__', kind)}; "
                     f"tuples as 512,512, dicts as JSON like '{{\"embed_dim\": 48}}')")


def apply_overrides(recipe: Any, items: list[str]) -> Any:
    """Return ``recipe`` with ``field=value`` strings applied; unknown fields and bad values raise."""
    hints = typing.get_type_hints(type(recipe))
    changes: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not field=value")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in hints:
            raise ValueError(f"unknown field {key!r}; fields are: {', '.join(hints)}")
        changes[key] = _parse(text, hints[key], key)
    return dataclasses.replace(recipe, **changes)

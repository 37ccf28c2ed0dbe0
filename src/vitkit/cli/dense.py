"""``vitkit segment …`` and ``vitkit detect …``: train, evaluate and predict with Swin/ViT backbones.

    vitkit segment train --recipe upernet_camvid_cpu data=../shared/data/camvid/camvid-trainval.tar
    vitkit segment eval --checkpoint runs/camvid/checkpoint-best.pt --mode slide
    vitkit segment predict img.jpg --checkpoint runs/camvid/checkpoint-best.pt --out preds/
    vitkit detect train --recipe mask_rcnn_coco8_smoke data=../shared/data/coco8/coco8-seg
    torchrun --nproc_per_node=2 --no-python vitkit segment train …   (DDP, gloo on CPU)

Any recipe field can be overridden as ``field=value`` (``vitkit segment recipes`` lists recipes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _train_args(p: argparse.ArgumentParser, default_recipe: str, length: str) -> None:
    p.add_argument("--recipe", default=default_recipe, help=f"named recipe (default {default_recipe})")
    p.add_argument("--model", help="backbone model name (swin_* or vit_*)")
    p.add_argument("--data", help="data folder or archive")
    p.add_argument(f"--{length}", type=int, help=f"training length in {length}")
    p.add_argument("--batch-size", type=int, help="global batch size (split over torchrun processes)")
    p.add_argument("--weights", help="classification checkpoint for the backbone")
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last.pt")
    p.add_argument("overrides", nargs="*", metavar="field=value", help="any recipe field, e.g. lr=1e-4 crop_size=256,256")
    from .train import accept_overrides_anywhere  # field=value anywhere among the options

    accept_overrides_anywhere(p)


def _recipe(args: argparse.Namespace, table: dict, length: str):
    from ..dense.recipes import apply_overrides, get_recipe

    r = get_recipe(args.recipe, table)
    flags = dict(model=args.model, data=args.data, batch_size=args.batch_size, weights=args.weights, out=args.out)
    flags[length] = getattr(args, length)
    r = dataclasses.replace(r, **{k: v for k, v in flags.items() if v is not None})
    return apply_overrides(r, args.overrides)


def first_sentence(doc: str | None) -> str:
    """A docstring's first sentence, whole (it may run over several lines), without reST markup."""
    text = " ".join((doc or "").split()).replace("``", "")
    for i, ch in enumerate(text):
        if ch == "." and (i + 1 == len(text) or text[i + 1] == " ") and text[:i].count("(") <= text[:i].count(")"):
            return text[: i + 1]
    return text


def _list(table: dict) -> int:
    for name, fn in table.items():
        print(f"{name:32s} {first_sentence(fn.__doc__)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from . import add_command

    seg = add_command(sub, "segment", help="semantic segmentation (UperNet on a Swin/ViT backbone)",
                      description="Semantic segmentation with UperNet on a Swin or ViT backbone: train, "
                      "eval, predict, recipes ('vitkit segment ACTION --help' for each).",
                      examples=["vitkit segment recipes",
                                "vitkit segment train --recipe upernet_camvid_cpu --data camvid-trainval.tar"])
    ss = seg.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = add_command(ss, "train", help="train a segmenter; writes a run folder",
                    description="Train a segmenter with a named recipe ('vitkit segment recipes'); any recipe "
                    "field can be overridden as field=value. The run folder gets the config, metrics, "
                    "checkpoints and the final mIoU.",
                    examples=["vitkit segment train --recipe upernet_camvid_cpu --data camvid-trainval.tar --out runs/camvid",
                              "vitkit segment train --out runs/camvid --resume",
                              "torchrun --nproc_per_node=2 --no-python vitkit segment train --recipe upernet_camvid_cpu"])
    _train_args(p, "upernet_camvid_cpu", "iters")
    p.set_defaults(func=segment_train)
    p = add_command(ss, "eval", help="mIoU / pixel accuracy of a checkpoint",
                    description="Mean IoU, pixel accuracy and per-class IoU of a segmentation checkpoint on "
                    "a split of its data (default: the training run's data), whole-image or sliding-window, "
                    "optionally multi-scale and flipped.",
                    examples=["vitkit segment eval --checkpoint runs/camvid/checkpoint-best.pt",
                              "vitkit segment eval --checkpoint runs/camvid/checkpoint-best.pt --mode slide "
                              "--scales 0.75,1,1.25 --flip"])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="data (default: the training run's)")
    p.add_argument("--split", default="val")
    p.add_argument("--mode", choices=("whole", "slide"), help="inference mode (default: the recipe's)")
    p.add_argument("--crop", type=_ints, help="sliding window H,W")
    p.add_argument("--stride", type=_ints, help="sliding stride H,W")
    p.add_argument("--scales", type=_floats, default=(1.0,), help="multi-scale testing, e.g. 0.75,1,1.25")
    p.add_argument("--flip", action="store_true", help="average with the mirrored image")
    p.add_argument("--json", help="also write the scores to this file")
    p.set_defaults(func=segment_eval)
    p = add_command(ss, "predict", help="colour-coded prediction overlays for images",
                    description="Colour-coded segmentation overlays for image files, written as PNG files to "
                    "--out (with the ground truth beside when --labels are given).",
                    examples=["vitkit segment predict street.jpg --checkpoint runs/camvid/checkpoint-best.pt --out preds/"])
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--labels", nargs="*", help="label PNGs (same order) to show the ground truth beside")
    p.add_argument("--mode", choices=("whole", "slide"), default="whole")
    p.add_argument("--out", default="predictions")
    p.set_defaults(func=segment_predict)
    p = add_command(ss, "recipes", help="list the segmentation recipes",
                    description="List the segmentation recipes, one line each (name and what it trains).",
                    examples=["vitkit segment recipes"])
    p.set_defaults(func=lambda a: _list(__import__("vitkit.dense.recipes", fromlist=["x"]).SEG_RECIPES))

    det = add_command(sub, "detect", help="object detection / instance segmentation (Mask/Faster R-CNN + FPN)",
                      description="Object detection and instance segmentation with torchvision's Mask/Faster "
                      "R-CNN + FPN on a Swin or ViT backbone: train, eval, predict, recipes. COCO AP needs "
                      "pycocotools: pip install 'vitkit[dense]'.",
                      examples=["vitkit detect recipes",
                                "vitkit detect train --recipe mask_rcnn_coco8_smoke --data coco8-seg"])
    ds = det.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = add_command(ds, "train", help="train a detector; writes a run folder",
                    description="Train a detector with a named recipe ('vitkit detect recipes'); any recipe "
                    "field can be overridden as field=value. Evaluation (COCO box/mask AP) needs pycocotools "
                    "(pip install 'vitkit[dense]'), checked before training starts.",
                    examples=["vitkit detect train --recipe mask_rcnn_coco8_smoke --data coco8-seg --out runs/coco8",
                              "vitkit detect train --out runs/coco8 --resume"])
    _train_args(p, "mask_rcnn_coco8_smoke", "epochs")
    p.set_defaults(func=detect_train)
    p = add_command(ds, "eval", help="COCO box (and mask) AP of a checkpoint",
                    description="COCO box (and mask) AP of a detection checkpoint on a split of its data "
                    "(default: the training run's data). Needs pycocotools: pip install 'vitkit[dense]'.",
                    examples=["vitkit detect eval --checkpoint runs/coco8/checkpoint-best.pt --json ap.json"])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="data (default: the training run's)")
    p.add_argument("--split", default="val")
    p.add_argument("--json", help="also write the scores to this file")
    p.set_defaults(func=detect_eval)
    p = add_command(ds, "predict", help="box/mask overlays for images, or for a data split beside its labels",
                    description="Box and mask overlays as PNG files in --out: for image files, or for every "
                    "image of a data split beside its ground truth (--data).",
                    examples=["vitkit detect predict street.jpg --checkpoint runs/coco8/checkpoint-best.pt",
                              "vitkit detect predict --checkpoint runs/coco8/checkpoint-best.pt --data coco8-seg --split val"])
    p.add_argument("images", nargs="*")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="instead of IMAGES: every image of --split, prediction | ground truth")
    p.add_argument("--split", default="val")
    p.add_argument("--score-thresh", type=float, default=0.5)
    p.add_argument("--out", default="predictions")
    p.set_defaults(func=detect_predict)
    p = add_command(ds, "recipes", help="list the detection recipes",
                    description="List the detection recipes, one line each (name and what it trains).",
                    examples=["vitkit detect recipes"])
    p.set_defaults(func=lambda a: _list(__import__("vitkit.dense.recipes", fromlist=["x"]).DET_RECIPES))


def _stopped_cleanly(train, r, args: argparse.Namespace):
    """Run ``train``; a stop the user can act on (NaN loss, …) is one line, not a traceback."""
    from ..train.loop import TrainingError

    try:
        return train(r, resume=args.resume)
    except TrainingError as e:
        print(f"vitkit {args.command} train: stopped: {e}", file=sys.stderr)
        return None
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the run saved itself and said so
        raise SystemExit(128 + getattr(e, "signum", 2)) from None


def segment_train(args: argparse.Namespace) -> int:
    from ..dense.recipes import SEG_RECIPES
    from ..dense.train_seg import train

    r = _recipe(args, SEG_RECIPES, "iters")
    scores = _stopped_cleanly(train, r, args)
    if scores is None:
        return 1
    if scores:
        logging.getLogger("vitkit.dense").info("final: mIoU %.4f  aAcc %.4f  (run folder %s)",
                                               scores["mIoU"], scores["aAcc"], r.out)
    return 0


def segment_eval(args: argparse.Namespace) -> int:
    import torch

    from ..dense.seg_data import EvalTransform, open_segmentation
    from ..dense.train_seg import evaluate, load_checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, r, meta = load_checkpoint(args.checkpoint, device)
    cfg = model.pretrained_cfg
    tf = EvalTransform(r.base_size if r.test_resize else None, cfg.get("mean", (0.485, 0.456, 0.406)),
                       cfg.get("std", (0.229, 0.224, 0.225)))
    ds = open_segmentation(args.data or r.data, args.split, fmt=r.data_format, num_classes=meta["num_classes"],
                           transform=tf)
    s = evaluate(model, ds, meta["num_classes"], device=device, mode=args.mode or r.eval_mode,
                 crop=args.crop or r.eval_crop, stride=args.stride or r.eval_stride, scales=args.scales,
                 flip=args.flip)
    print(f"{args.split}: mIoU {s['mIoU']:.4f}  aAcc {s['aAcc']:.4f}  mAcc {s['mAcc']:.4f}  ({len(ds)} images)")
    for name, iou in zip(meta["class_names"], s["iou"]):
        print(f"  {name:16s} IoU {iou:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2) + "\n")
    return 0


def segment_predict(args: argparse.Namespace) -> int:
    from ..dense.train_seg import predict

    if args.labels and len(args.labels) != len(args.images):
        raise ValueError(f"--labels gives {len(args.labels)} files for {len(args.images)} images")
    for path in predict(args.checkpoint, args.images, args.out, mode=args.mode, labels=args.labels):
        print(path)
    return 0


def detect_train(args: argparse.Namespace) -> int:
    from ..extras import check

    check("pycocotools", "vitkit detect train (COCO box/mask AP at each evaluation)")  # before any work
    from ..dense.recipes import DET_RECIPES
    from ..dense.train_det import train

    r = _recipe(args, DET_RECIPES, "epochs")
    return 0 if _stopped_cleanly(train, r, args) is not None else 1


def detect_eval(args: argparse.Namespace) -> int:
    from ..extras import check

    check("pycocotools", "vitkit detect eval (COCO box/mask AP)")
    import torch

    from ..dense.det_data import detection_transform, open_detection
    from ..dense.train_det import evaluate, load_checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, r, meta = load_checkpoint(args.checkpoint, device)
    ds = open_detection(args.data or r.data, args.split, fmt=r.data_format, masks=meta["masks"],
                        transforms=detection_transform(False))
    res = evaluate(model, ds, meta["num_classes"], device=device, masks=meta["masks"], class_names=meta["class_names"])
    for kind, stats in res.items():
        print(f"{args.split} {kind}: " + "  ".join(f"{k} {v:.4f}" for k, v in stats.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def detect_predict(args: argparse.Namespace) -> int:
    from ..dense.train_det import predict, predict_split

    if bool(args.images) == bool(args.data):
        raise ValueError("give IMAGES or --data (with --split), not both or neither")
    paths = (predict_split(args.checkpoint, args.data, args.split, args.out, score_thresh=args.score_thresh)
             if args.data else predict(args.checkpoint, args.images, args.out, score_thresh=args.score_thresh))
    for path in paths:
        print(path)
    return 0

"""``vitkit convert`` and ``vitkit predict``: thin wrappers over :mod:`vitkit.weights`."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint of any supported format to vitkit safetensors")
    p.add_argument("src", help="checkpoint: official ViT .npz, official Swin .pth, timm, torchvision, "
                               "transformers or vitkit")
    p.add_argument("dst", help="output .safetensors file (with model name, preprocessing and labels)")
    p.add_argument("--model", help="vitkit model name (default: inferred from the checkpoint's shapes)")
    p.add_argument("--format", dest="fmt", help="force the source format instead of detecting it")
    p.set_defaults(func=run_convert)

    p = sub.add_parser("predict", help="classify images with a model and its weights' own preprocessing")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--model", help="vitkit model name, e.g. vit_base_patch16_224 (with --runtime onnxruntime: "
                                   "the .onnx file, or give it as the first IMAGE argument)")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="onnxruntime: run a `vitkit export`ed .onnx file with the preprocessing and labels it carries")
    p.add_argument("--weights", help="checkpoint PATH or pretrained TAG (default: the model's default tag)")
    p.add_argument("--topk", type=int, default=5)
    p.set_defaults(func=run_predict)


def run_convert(args: argparse.Namespace) -> int:
    from ..weights.convert import convert_checkpoint

    report, name = convert_checkpoint(args.src, args.dst, model=args.model, fmt=args.fmt)
    print(f"{args.src} -> {args.dst} as {name}: {report}")
    for line in report.dropped[:10]:
        print(f"  dropped {line}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ..weights.convert import model_with_weights
    from ..weights.preprocess import classify

    if args.topk < 1:
        raise ValueError(f"--topk must be at least 1, got {args.topk}")
    if args.runtime == "onnxruntime":
        from ..export.cli import predict_onnx_cli

        return predict_onnx_cli(args)
    if not args.model:
        raise ValueError("--model NAME is required (with --runtime torch)")
    for img in args.images:
        if not Path(img).is_file():
            raise FileNotFoundError(f"image {img!r} does not exist")
    model = model_with_weights(args.model, args.weights)
    for img, rows in zip(args.images, classify(model, args.images, args.topk)):
        print(img)
        for rank, (idx, label, prob) in enumerate(rows, 1):
            print(f"  {rank}. {label} ({idx}): {prob:.4f}")
    return 0

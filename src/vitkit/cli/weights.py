"""``vitkit convert`` and ``vitkit predict``: thin wrappers over :mod:`vitkit.weights`."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from . import add_command

    p = add_command(sub, "convert", help="convert a checkpoint of any supported format to vitkit safetensors",
                    description="Convert a checkpoint (official ViT .npz, official Swin .pth, timm, torchvision, "
                    "transformers or a vitkit training checkpoint) to one vitkit .safetensors file that names "
                    "its model and carries its preprocessing and labels; the model is inferred from the "
                    "tensors' shapes unless --model says it.",
                    examples=["vitkit convert ViT-B_16.npz vit_b16.safetensors",
                              "vitkit convert runs/c10/checkpoint-best.pt c10.safetensors",
                              "vitkit convert swin_tiny_patch4_window7_224.pth swin_t.safetensors --format swin_official"])
    p.add_argument("src", help="checkpoint: official ViT .npz, official Swin .pth, timm, torchvision, "
                               "transformers or vitkit")
    p.add_argument("dst", help="output .safetensors file (with model name, preprocessing and labels)")
    p.add_argument("--model", help="vitkit model name (default: inferred from the checkpoint's shapes)")
    p.add_argument("--format", dest="fmt", help="force the source format instead of detecting it")
    p.set_defaults(func=run_convert)

    p = add_command(sub, "predict", help="classify images with a model and its weights' own preprocessing",
                    description="Classify image files with a checkpoint (a vitkit training checkpoint, a "
                    "converted .safetensors file, or any supported format) or a published tag. A vitkit file "
                    "or checkpoint names its model and class names, so --model is only needed for files "
                    "that do not (timm, official .npz, ...) or for a tag; the model's own preprocessing "
                    "(size, crop, mean/std) is applied.",
                    examples=["vitkit predict cat.jpg dog.jpg --checkpoint runs/c10/checkpoint-best.pt",
                              "vitkit predict cat.jpg --model vit_base_patch16_224 --weights augreg_in21k_ft_in1k",
                              "vitkit predict --runtime onnxruntime vit_b16.onnx cat.jpg   # a vitkit export file"])
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", "--weights", dest="weights", metavar="PATH|TAG",
                   help="weights file (training checkpoint, converted .safetensors, timm, official, ...) or a "
                        "pretrained TAG of --model (default: the model's default tag)")
    p.add_argument("--model", help="vitkit model name, e.g. vit_base_patch16_224 (default: the one the "
                                   "checkpoint names, else the one its shapes fit)")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="onnxruntime: run a `vitkit export`ed .onnx file (give it as --model or as the first "
                        "IMAGE) with the preprocessing and labels it carries")
    p.add_argument("--topk", type=int, default=5)
    p.set_defaults(func=run_predict)


def run_convert(args: argparse.Namespace) -> int:
    from ..weights.convert import convert_checkpoint

    report, name = convert_checkpoint(args.src, args.dst, model=args.model, fmt=args.fmt)
    print(f"{args.src} -> {args.dst} as {name}: {report}")
    for line in report.dropped[:10]:
        print(f"  dropped {line}")
    return 0


def _check_predict_args(args: argparse.Namespace) -> None:
    """Bad input, before any model is built: one line each."""
    if args.topk < 1:
        raise ValueError(f"--topk must be at least 1, got {args.topk}")
    for img in args.images:
        if not Path(img).is_file():
            raise FileNotFoundError(f"image {img!r} does not exist")
    if args.model is None and not (args.weights and Path(args.weights).is_file()):
        raise ValueError("give --checkpoint PATH (a file that names its model), or --model NAME "
                         "(with --weights TAG or PATH, or none for the default pretrained tag)")


def load_predict_model(args: argparse.Namespace):
    """The model ``--checkpoint``/``--weights`` and ``--model`` ask for (the one build path,
    :mod:`vitkit.build`), with its preprocessing and labels; a ``--model`` that contradicts the
    file is refused naming both."""
    from ..weights.convert import model_with_weights

    if args.weights and Path(args.weights).is_file():
        return _model_from_file(args.weights, args.model)
    return model_with_weights(args.model, args.weights)


def _model_from_file(path: str, name: str | None):
    from ..build import build_from_file
    from ..weights.load import read_weights

    w = read_weights(path)
    saved = w.meta.get("model")
    if name is not None and isinstance(saved, str) and saved != name:
        raise ValueError(f"--model {name} does not match the checkpoint {path}, which holds a {saved}; "
                         "leave --model out to use the checkpoint's model")
    try:
        return build_from_file(w, name)
    except (ValueError, RuntimeError) as e:
        if name is None:
            raise
        from ..weights.inspect import candidate_models

        fits = candidate_models(w.info)
        hint = f"its tensors fit {', '.join(fits[:3])}" if fits else "its tensors fit no registered model"
        raise ValueError(f"--model {name} does not match the checkpoint {path} ({hint}; leave --model out to "
                         f"infer it): {e}") from e


def print_predictions(images: list[str], rows_per_image: list) -> None:
    for img, rows in zip(images, rows_per_image):
        print(img)
        for rank, (idx, label, prob) in enumerate(rows, 1):
            named = label != f"class {idx}"  # classify() says "class N" when the weights carry no names
            print(f"  {rank}. {label} ({idx}): {prob:.4f}" if named else f"  {rank}. class {idx}: {prob:.4f}")


def run_predict(args: argparse.Namespace) -> int:
    from ..weights.preprocess import classify

    if args.runtime == "onnxruntime":  # an exported .onnx file (vitkit.export)
        if args.topk < 1:
            raise ValueError(f"--topk must be at least 1, got {args.topk}")
        from ..export.cli import predict_onnx_cli

        return predict_onnx_cli(args)
    _check_predict_args(args)
    model = load_predict_model(args)
    print_predictions(args.images, classify(model, args.images, args.topk))
    return 0

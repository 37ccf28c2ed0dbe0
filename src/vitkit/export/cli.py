"""The onnxruntime branch of ``vitkit predict`` (kept here so that cli/weights.py only delegates)."""
from __future__ import annotations

import argparse

from .core import require


def predict_onnx_cli(args: argparse.Namespace) -> int:
    """``vitkit predict --runtime onnxruntime MODEL.onnx IMAGE…`` (or ``--model MODEL.onnx IMAGE…``):
    top-k labels with the file's own preprocessing record and label names."""
    from .runtime import predict_onnx

    try:
        require("onnx", "onnxruntime")
    except ImportError as e:
        raise ValueError(str(e)) from None
    images = list(args.images)
    model = args.model
    if not model:
        if len(images) < 2:
            raise ValueError("give the .onnx file and at least one image: vitkit predict --runtime onnxruntime "
                             "MODEL.onnx IMAGE...")
        model, images = images[0], images[1:]
    if not str(model).endswith(".onnx"):
        raise ValueError(f"--runtime onnxruntime runs an .onnx file (from `vitkit export`), not {model!r}")
    from ..cli.weights import print_predictions  # the same lines as the torch runtime

    print_predictions(images, predict_onnx(model, images, args.topk))
    return 0

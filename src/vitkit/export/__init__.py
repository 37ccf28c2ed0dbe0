"""Deploy vitkit models at any size: ONNX (dynamo exporter) and ``torch.export`` programs with
dynamic batch and H×W, checked in onnxruntime; ``vitkit export`` and
``vitkit predict --runtime onnxruntime`` are thin wrappers over it (see docs/export.md).

    from vitkit.export import export_onnx, export_program
    export_onnx("swin_tiny_patch4_window7_224", "swin_t.onnx")          # any batch, any H×W
    export_program("runs/c10", "vit.pt2", static=224)                    # a run folder, one size

onnx, onnxscript and onnxruntime come with ``pip install 'vitkit[export]'``.
"""
from .core import (
    DEFAULT_OPSET,
    dynamic_shapes_for,
    export_onnx,
    export_program,
    load_program,
    metadata_for,
    read_metadata,
    resolve_model,
    trace,
)
from .runtime import OnnxClassifier, predict_onnx

__all__ = ["DEFAULT_OPSET", "OnnxClassifier", "dynamic_shapes_for", "export_onnx", "export_program", "load_program",
           "metadata_for", "predict_onnx", "read_metadata", "resolve_model", "trace"]

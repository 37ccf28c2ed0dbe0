"""Run an exported ONNX classifier in onnxruntime with the preprocessing and labels it carries
(``vitkit predict --runtime onnxruntime MODEL.onnx IMAGES…``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..weights.io import DamagedFileError, damaged_message
from .core import read_metadata, require


class OnnxClassifier:
    """An onnxruntime session over a vitkit ONNX file: ``metadata`` is the file's record
    (:func:`vitkit.export.metadata_for`), ``__call__`` maps a (B, C, H, W) float32 array to logits.
    ``threads``: onnxruntime's intra-op threads (None: its default)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        require("onnx", "onnxruntime")
        import onnx
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file {str(path)!r} does not exist")
        try:
            if path.stat().st_size == 0:  # protobuf reads 0 bytes as an empty model
                raise ValueError("empty file")
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # noqa: BLE001  (protobuf's DecodeError, a cut file, ...: name the file)
            raise DamagedFileError(damaged_message(path, e, "an ONNX model")) from None
        self.metadata: dict[str, Any] = read_metadata({p.key: p.value for p in proto.metadata_props})
        if "input_size" not in self.metadata:
            raise ValueError(f"{path} carries no vitkit preprocessing record (metadata_props); export it with "
                             "`vitkit export` or give the preprocessing yourself")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def preprocess(self, images: Sequence[str | Path]) -> np.ndarray:
        """Image files → (B, C, H, W) float32, with the file's record (resize, crop, normalise)."""
        from PIL import Image

        from ..weights.preprocess import eval_transform

        tf = eval_transform(self.metadata)
        batch = []
        for p in images:
            with Image.open(p) as im:
                batch.append(tf(im).numpy())
        return np.stack(batch)

    def classify(self, images: Sequence[str | Path], topk: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-``topk`` (class index, label, probability) per image (unnamed classes: ``class N``)."""
        logits = self(self.preprocess(images)).astype(np.float64)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        labels = self.metadata.get("labels")
        k = min(topk, probs.shape[-1])
        out = []
        for row in probs:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([(int(i), labels[i] if labels else f"class {i}", float(row[i])) for i in top])
        return out


def predict_onnx(model: str | Path, images: Sequence[str | Path], topk: int = 5,
                 threads: int | None = None) -> list[list[tuple[int, str, float]]]:
    """:meth:`OnnxClassifier.classify` of ``images`` with the ONNX file ``model``."""
    for img in images:
        if not Path(img).is_file():
            raise FileNotFoundError(f"image {str(img)!r} does not exist")
    return OnnxClassifier(model, threads).classify(images, topk)

"""onnxruntime rows of ``vitkit bench``: vitkit and timm models exported to ONNX (dynamo exporter)
and run in an onnxruntime CPU session on the benchmark's own input, in the same alternating rounds.

- ``vitkit-onnxruntime``: :func:`vitkit.export.export_onnx` with the input's H×W baked
  (``static``; the batch stays dynamic), the deployment form of a fixed-size service.
- ``vitkit-onnxruntime-dynamic``: the default export, batch and H×W dynamic (the price of one
  file for every size).
- ``timm-onnxruntime``: the timm peer (same weights) through ``torch.onnx.export(..., dynamo=True)``
  with a dynamic batch, or fully static where that fails; an export that fails is reported as the
  row's error ("where timm exports").

Exports are kept for the process (one per implementation, model and input size), so batch 1 and
batch 8 runs share them.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

ORT_IMPLS = ("vitkit-onnxruntime", "vitkit-onnxruntime-dynamic", "timm-onnxruntime")
_files: dict[tuple, tuple[Path, str]] = {}
_folder: list[tempfile.TemporaryDirectory] = []


def _path(key: tuple) -> Path:
    if not _folder:
        _folder.append(tempfile.TemporaryDirectory(prefix="vitkit-bench-onnx-"))
    return Path(_folder[0].name) / (f"{len(_files)}.onnx")


def _export_peer(peer: nn.Module, x: torch.Tensor, path: Path) -> str:
    """timm's model to ONNX: dynamic batch if it exports so, else fully static; returns which."""
    from torch.export import Dim

    try:
        torch.onnx.export(peer, (x,), str(path), dynamo=True, dynamic_shapes=({0: Dim("batch", min=1, max=4096)},),
                          input_names=["pixel_values"], verbose=False)
        return "dynamic batch"
    except Exception:  # noqa: BLE001  (any exporter failure: fall back to the static graph)
        torch.onnx.export(peer, (x,), str(path), dynamo=True, input_names=["pixel_values"], verbose=False)
        return "static"


def onnx_file(impl: str, vk: nn.Module, x: torch.Tensor, peer: Callable[[], nn.Module]) -> tuple[Path, str]:
    """The ONNX file of ``impl`` for ``vk`` at ``x``'s size (exported once per process) and its shapes."""
    from ..export import export_onnx

    hw = tuple(x.shape[2:])
    key = (impl, getattr(vk, "model_name", ""), hw, x.shape[0] if impl.startswith("timm") else None)
    if key not in _files:
        path = _path(key)
        if impl == "vitkit-onnxruntime":
            export_onnx(vk, path, static=hw)
            kind = "static HxW, dynamic batch"
        elif impl == "vitkit-onnxruntime-dynamic":
            export_onnx(vk, path)
            kind = "dynamic batch and HxW"
        else:
            with torch.no_grad():
                kind = _export_peer(peer().eval(), x, path)
        _files[key] = (path, kind)
    return _files[key]


def session_step(impl: str, vk: nn.Module, x: torch.Tensor, threads: int | None,
                 peer: Callable[[], nn.Module]) -> tuple[Callable[[], Any], torch.Tensor, str]:
    """(one timed call, its logits for the correctness check, the export's shapes) for ``impl``."""
    import onnxruntime as ort

    path, kind = onnx_file(impl, vk, x, peer)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x.detach().cpu().float().numpy())}
    out = torch.from_numpy(sess.run(None, feed)[0])

    def infer() -> None:
        sess.run(None, feed)
    return infer, out, kind

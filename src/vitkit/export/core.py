"""Export a vitkit model to a ``torch.export`` program (``.pt2``) or to ONNX, at any input size.

Dynamic by default: the batch and the image height and width are symbolic in the graph, within
the sizes the architecture allows (ViT and hybrid: multiples of the patch stride, the position
embeddings resampled in the graph; Swin: any size, padded to window multiples and masked in the
graph). ``static=SIZE`` bakes one H×W instead (the batch stays dynamic): a ViT's position
embeddings are resampled to that grid once, before tracing, and the graph holds the result.

The preprocessing record (mean, std, input size, crop, interpolation), the label names and the
model's name go with the file: ONNX ``metadata_props`` (one JSON value per key, see
:func:`metadata_for`), and an extra file ``vitkit.json`` inside the ``.pt2``.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .. import __version__
from ..build import build_from_file, create_model
from ..models.base import ModelBase
from ..registry import is_registered
from ..weights.io import decode_metadata

EXTRA = "export"  # the pyproject extra that installs onnx, onnxscript and onnxruntime
DEFAULT_OPSET = 18
MAX_SIDE = 4096  # largest H or W a dynamic export accepts
MAX_BATCH = 4096
INPUT_NAME, OUTPUT_NAME = "pixel_values", "logits"
METADATA_FILE = "vitkit.json"  # the record's name inside a .pt2
RECORD_KEYS = ("mean", "std", "input_size", "crop_pct", "interpolation")


def require(*modules: str) -> None:
    """Import ``modules`` or fail with the install line for the ``export`` extra."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"{', '.join(missing)} is not installed; ONNX export and the onnxruntime runtime need "
                          f"pip install 'vitkit[{EXTRA}]' (onnx, onnxscript, onnxruntime)")


# ------------------------------------------------------------------------------ the model to export
def resolve_model(src: nn.Module | str | Path, *, pretrained: bool | str = False) -> nn.Module:
    """The model ``src`` names, through the one build path (:mod:`vitkit.build`): a model (used as
    is), a registered name (``"vit_base_patch16_224"``, ``"name.tag"``; ``pretrained`` as in
    :func:`vitkit.create_model`), a weights file or training checkpoint of any supported format, or a
    run folder (its ``checkpoint-best.pt``, else ``checkpoint-last.pt``)."""
    if isinstance(src, nn.Module):
        return src
    path = Path(src)
    if path.is_dir():
        for name in ("checkpoint-best.pt", "checkpoint-last.pt"):
            if (path / name).is_file():
                return build_from_file(path / name)
        raise FileNotFoundError(f"run folder {str(path)!r} holds no checkpoint-best.pt or checkpoint-last.pt")
    if path.is_file():
        return build_from_file(path)
    text = str(src)
    if is_registered(text) or ("." in text and is_registered(text.split(".", 1)[0])):
        return create_model(text, pretrained=pretrained)
    raise FileNotFoundError(f"{text!r} is neither a registered model name (see `vitkit models`), a weights file "
                            "nor a run folder")


def _patch_stride(model: nn.Module) -> int:
    """Pixels per token along a side that every input size must be a multiple of (1: any size)."""
    if not isinstance(model, ModelBase):
        raise ValueError(f"export takes vitkit models (ViT, hybrid ViT, Swin), not {type(model).__name__}")
    return int(model.input_size_multiple())


def _size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"a static size is H or (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def prepare(model: nn.Module, static: int | tuple[int, int] | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` for tracing; with ``static`` its native size set to it (a
    ViT's position embeddings resampled once, so the graph holds them rather than a resize)."""
    _patch_stride(model)
    model = copy.deepcopy(model).eval()
    if static is not None:
        h, w = _size(static)
        if (h, w) != tuple(model.pretrained_cfg["input_size"][1:]):
            model.set_input_size((h, w))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def example_input(model: nn.Module, batch: int = 2, static: int | tuple[int, int] | None = None) -> torch.Tensor:
    """A (batch, C, H, W) input at the model's native size (or ``static``). Batch 2: a size of 1
    would be specialised by the tracer."""
    c, h, w = model.pretrained_cfg["input_size"]
    if static is not None:
        h, w = _size(static)
    p = next(model.parameters())
    return torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(0)).to(p.dtype)


def _static(model: nn.Module, dynamic: bool, static: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """The baked size: ``static``, or the model's own when ``dynamic`` is False."""
    if static is not None:
        return _size(static)
    return None if dynamic else tuple(model.pretrained_cfg["input_size"][1:])


def dynamic_shapes_for(model: nn.Module, static: bool = False) -> dict[str, dict[int, Any]]:
    """``torch.export`` dynamic shapes of the input ``x``: batch always; H and W unless ``static``,
    as multiples of the patch stride for a ViT (``stride · Dim``), any size for Swin."""
    from torch.export import Dim

    shapes: dict[int, Any] = {0: Dim("batch", min=1, max=MAX_BATCH)}
    if not static:
        stride = _patch_stride(model)
        if stride > 1:
            shapes[2] = stride * Dim("grid_h", min=1, max=MAX_SIDE // stride)
            shapes[3] = stride * Dim("grid_w", min=1, max=MAX_SIDE // stride)
        else:
            lo = int(getattr(model, "patch_size", 1))
            shapes[2], shapes[3] = Dim("height", min=lo, max=MAX_SIDE), Dim("width", min=lo, max=MAX_SIDE)
    return {"x": shapes}


def trace(model: nn.Module, static: int | tuple[int, int] | None = None) -> torch.export.ExportedProgram:
    """``torch.export`` of :func:`prepare`'s copy, dynamic unless ``static`` (module docstring).

    A dynamic Swin is traced size-obliviously (``backed_size_oblivious``, asked of the model:
    ``export_size_oblivious``): whether a stage has one window or several along a side must not be
    special-cased, or the graph would serve only the sizes like the example's. (A ViT is traced
    without it: there it turns the [class]-token tail's matmul into a guard on the batch being 1.)"""
    import torch.fx.experimental._config as fx_config

    net = prepare(model, static)
    x = example_input(net, static=static)
    oblivious = static is None and net.export_size_oblivious()
    with fx_config.patch(backed_size_oblivious=oblivious), torch.no_grad():
        return torch.export.export(net, (x,), dynamic_shapes=dynamic_shapes_for(net, static is not None))


# ----------------------------------------------------------------------------------- metadata
def metadata_for(model: nn.Module, static: int | tuple[int, int] | None = None, **extra: Any) -> dict[str, str]:
    """What goes with an exported file, as ``key → JSON text``: the preprocessing record
    (``mean``, ``std``, ``input_size``, ``crop_pct``, ``interpolation``), ``labels`` (list or null),
    ``model`` (the vitkit name), ``num_classes``, ``dynamic`` (which input axes are free),
    ``size_multiple`` (H and W must be multiples of it), ``vitkit_version`` and ``extra``."""
    cfg = model.pretrained_cfg
    record = {k: cfg.get(k) for k in RECORD_KEYS}
    record["input_size"] = list(cfg["input_size"])
    if static is not None:
        record["input_size"] = [record["input_size"][0], *_size(static)]
    for k in ("mean", "std"):
        record[k] = list(record[k])
    out: dict[str, Any] = dict(record)
    out.update(labels=list(cfg.get("labels") or []) or None, model=getattr(model, "model_name", type(model).__name__),
               num_classes=int(getattr(model, "num_classes", 0)),
               dynamic=["batch"] if static is not None else ["batch", "height", "width"],
               size_multiple=_patch_stride(model), vitkit_version=__version__, **extra)
    return {k: json.dumps(v) for k, v in out.items()}


def read_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """:func:`metadata_for`'s ``key → JSON text`` back to values (other keys kept as text), as a
    vitkit file's metadata is read."""
    return decode_metadata(props)


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


# ------------------------------------------------------------------------------------ exporters
def export_program(src: nn.Module | str | Path, path: str | Path | None = None, *, dynamic: bool = True,
                   static: int | tuple[int, int] | None = None, pretrained: bool | str = False
                   ) -> torch.export.ExportedProgram:
    """``torch.export`` program of ``src`` (see :func:`resolve_model`), dynamic batch and H×W unless
    ``static`` (or ``dynamic=False``: the model's own size); written to ``path`` (``.pt2``,
    atomically, with ``vitkit.json`` inside) when given. Load it with :func:`load_program`."""
    model = resolve_model(src, pretrained=pretrained)
    static = _static(model, dynamic, static)
    ep = trace(model, static)
    if path is not None:
        path = Path(path)
        tmp = _atomic_target(path)
        try:
            record = read_metadata(metadata_for(model, static))
            torch.export.save(ep, str(tmp), extra_files={METADATA_FILE: json.dumps(record)})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return ep


def load_program(path: str | Path) -> tuple[torch.export.ExportedProgram, dict[str, Any]]:
    """A ``.pt2`` written by :func:`export_program` and its record (:func:`metadata_for`'s values)."""
    extra = {METADATA_FILE: ""}
    ep = torch.export.load(str(path), extra_files=extra)
    return ep, json.loads(extra[METADATA_FILE] or "{}")


def export_onnx(src: nn.Module | str | Path, path: str | Path, *, dynamic: bool = True,
                static: int | tuple[int, int] | None = None, opset: int = DEFAULT_OPSET,
                pretrained: bool | str = False, program: torch.export.ExportedProgram | None = None) -> Path:
    """ONNX file of ``src`` (see :func:`resolve_model`) through the dynamo exporter
    (``torch.onnx.export(..., dynamo=True)``) at opset ``opset``: input ``pixel_values`` (B, C, H, W),
    output ``logits``; dynamic batch and H×W unless ``static`` (or ``dynamic=False``: the model's own
    size); the record of :func:`metadata_for` in ``metadata_props``. ``program``: a :func:`trace` of
    the same model and size, reused (one trace for both files). Written atomically; returns ``path``."""
    require("onnx", "onnxscript")
    model = resolve_model(src, pretrained=pretrained)
    static = _static(model, dynamic, static)
    ep = program if program is not None else trace(model, static)
    x = example_input(model, static=static)
    onnx_program = torch.onnx.export(ep, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                     output_names=[OUTPUT_NAME], verbose=False)
    props = metadata_for(model, static, opset=opset, exporter=f"torch.onnx dynamo, torch {torch.__version__}")
    onnx_program.model.metadata_props.update(props)
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        onnx_program.save(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

"""``load_weights``: detect a checkpoint's format, convert it to vitkit's names, fit it to the model
(resample position embeddings and bias tables, replace the head on purpose), load, and report.

Nothing fails quietly: with ``strict=True`` (the default) a tensor the model needs but the file lacks,
a tensor the model cannot place, or a tensor of the wrong shape raises an error naming the first
keys and the detected format. The only deliberate gaps are a replaced classifier (zero-initialised,
as the paper fine-tunes, ViT §3.2) and buffers that vitkit recomputes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .formats import detect_format, get_format
from .inspect import candidate_models, describe, infer_architecture
from .io import read_checkpoint, unwrap_state_dict
from .resample import embed_bias_table, resample_bias_table, resample_grid_embed, resample_pos_embed, square_grid

log = logging.getLogger(__name__)
HEAD = ("head.weight", "head.bias")
PRE_LOGITS = ("pre_logits.fc.weight", "pre_logits.fc.bias")


@dataclass
class LoadReport:
    """What happened to each tensor. ``missing``, ``unexpected`` and ``mismatched`` are empty after
    a strict load; ``dropped`` lists what was left out on purpose, with the reason."""

    format: str = "vitkit"
    loaded: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # on purpose: replaced head, recomputed buffers
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    head_replaced: bool = False
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)  # a vitkit file's metadata (raw strings)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        s = (f"format={self.format}: loaded {len(self.loaded)}, resampled {len(self.resampled)}, "
             f"dropped {len(self.dropped)}, missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
             f"mismatched {len(self.mismatched)}")
        return s + ("; head replaced (zero-init)" if self.head_replaced else "")


def read_source(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata from a path or an in-memory state dict (numpy arrays accepted)."""
    if isinstance(source, (str, Path)):
        return read_checkpoint(source)
    return unwrap_state_dict(source), {}


def _stage_window(model: nn.Module, key: str, window: int) -> int:
    """The attention window that stage ``stages.{s}`` of a Swin uses at the model's own input size
    (smaller than ``window`` when the stage's map is; Swin §3.2)."""
    import math
    import re

    m = re.match(r"stages\.(\d+)\.", key)
    if m is None or not hasattr(model, "img_size"):
        return window
    h, w = (math.ceil(n / model.patch_size) for n in model.img_size)
    for _ in range(int(m.group(1))):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return min(window, h, w)


def _first(names: list[str], n: int = 5) -> str:
    more = f" … (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    *,
    strict: bool = True,
    fmt: str | None = None,
    interpolation: str = "bicubic",
) -> LoadReport:
    """Load ``source`` (a file path or a state dict in any supported format) into ``model``.

    ``fmt`` forces a format instead of detecting it; ``interpolation`` picks how position embeddings
    are resampled when the grid differs (see :mod:`vitkit.weights.resample`). When the checkpoint's
    classifier has another number of classes than ``model.num_classes`` (or the file has none), the
    head is replaced by a zero-initialised one and the report says so. Returns a :class:`LoadReport`.
    """
    raw, metadata = read_source(source)
    f = get_format(fmt) if fmt else detect_format(raw, metadata)
    conv = f.convert(raw)
    report = LoadReport(format=f.name, metadata=dict(metadata))
    report.dropped += [f"{k} ({why})" for k, why in conv.dropped.items()]
    blocks = getattr(model, "blocks", None)
    if f.name == "official_vit_npz" and blocks is not None and getattr(blocks[0].mlp.act, "approximate", "") != "tanh":
        report.notes.append("the official JAX code trained these weights with tanh GELU; build the model with "
                            "act='gelu_tanh' for its exact outputs (create_model(..., pretrained=...) does)")
    stem = getattr(model, "stem", None)
    if f.name == "official_vit_npz" and stem is not None and getattr(stem, "numerics", "jax") != "jax":
        report.notes.append("the official JAX code trained these weights with its own StdConv/GroupNorm epsilons; "
                            "build the model with stem_numerics='jax' for its exact outputs "
                            "(create_model(..., pretrained=...) does)")
    state = conv.state
    as_converted = dict(state)  # before the head is taken out: describes the file in errors
    target = model.state_dict()
    fitted: dict[str, torch.Tensor] = {}
    where = f"checkpoint (detected format: {f.name})"

    # ---- the classifier: keep, or replace on purpose
    has_pre = PRE_LOGITS[0] in target
    file_pre = PRE_LOGITS[0] in state
    model_classes = getattr(model, "num_classes", None)
    file_classes = state["head.weight"].shape[0] if "head.weight" in state else 0
    replace = False
    if HEAD[0] in target:
        if file_classes == 0:
            replace = True
            report.notes.append("the checkpoint has no classifier: head zero-initialised")
        elif state["head.weight"].shape != target["head.weight"].shape:
            replace = True
            report.notes.append(f"head replaced: {file_classes} classes in the file, {model_classes} in the model "
                                "(zero-initialised, ViT §3.2)")
        elif file_pre and not has_pre:
            msg = (f"the {where} head reads a tanh pre-logits layer (representation_size="
                   f"{state[PRE_LOGITS[0]].shape[0]}) that the model lacks; build the model with "
                   "representation_size=N to use the head as trained, or with another num_classes to replace it")
            if strict:
                raise ValueError(msg)
            replace = True
            report.notes.append(msg)
    if replace or HEAD[0] not in target:
        for k in HEAD:
            if k in state:
                report.dropped.append(f"{k} (classifier replaced)" if HEAD[0] in target else f"{k} (model has no classifier)")
                state.pop(k)
        if file_pre and not has_pre:
            for k in PRE_LOGITS:
                report.dropped.append(f"{k} (pre-training head removed with the classifier, ViT §3.2)")
                state.pop(k)
    report.head_replaced = replace

    # ---- shapes: resample what has a meaning at another size, refuse the rest
    for k, v in state.items():
        if k not in target:
            report.unexpected.append(k)
            continue
        want = target[k].shape
        if v.shape == want:
            fitted[k] = v
            continue
        if k == "pos_embed" and v.shape[-1] == want[-1]:
            prefix = getattr(model, "num_prefix_tokens", 1)
            old = square_grid(v.shape[1] - prefix)
            fitted[k] = resample_pos_embed(v, tuple(model.grid_size), old, prefix, interpolation)
        elif k.endswith("relative_position_bias_table") and v.shape[1] == want[1]:
            window = model.get_submodule(k.rsplit(".", 1)[0]).window_size
            side = int(round(v.shape[0] ** 0.5))
            if side == 2 * _stage_window(model, k, window) - 1 < 2 * window - 1:
                fitted[k] = embed_bias_table(v, window)  # a stage smaller than the window: exact
                report.notes.append(f"{k}: the file's table covers the stage's {(side + 1) // 2}-wide window; "
                                    "placed at the centre of the model's table")
            else:
                fitted[k] = resample_bias_table(v, window)
        elif k == "absolute_pos_embed" and v.shape[-1] == want[-1]:
            fitted[k] = resample_grid_embed(v, tuple(want[1:3]))
        else:
            report.mismatched.append(f"{k}: {tuple(v.shape)} in the file, {tuple(want)} in the model")
            continue
        report.resampled.append(f"{k}: {tuple(v.shape)} -> {tuple(want)}")
    report.unexpected = conv.unknown + report.unexpected
    skip = set(HEAD) if replace else set()
    report.missing = [k for k in target if k not in fitted and k not in skip]

    if report.mismatched and strict:
        info = infer_architecture(as_converted)
        fits = candidate_models(info)
        hint = f" (e.g. {', '.join(fits[:3])})" if fits else ""
        name = getattr(model, "model_name", type(model).__name__)
        raise ValueError(
            f"the {where} does not fit {name}: {len(report.mismatched)} of {len(state)} tensors have other "
            f"shapes, first: {_first(report.mismatched, 3)}. The file holds {describe(info)}; create the "
            f"model that matches it{hint}, or fine-tune from it with that architecture"
        )
    if strict and (report.missing or report.unexpected):
        parts = []
        if report.missing:
            parts.append(f"{len(report.missing)} model tensors are missing from the file: {_first(report.missing)}")
        if report.unexpected:
            parts.append(f"{len(report.unexpected)} file tensors have no place in the model: {_first(report.unexpected)}")
        raise ValueError(f"{where}: " + "; ".join(parts) +
                         ". Pass strict=False to load the rest, or fmt=NAME if the format was misdetected")

    if replace and hasattr(model, "reset_classifier"):
        model.reset_classifier(model_classes)
    with torch.no_grad():
        result = model.load_state_dict(fitted, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # every key was checked against ``target``
    report.loaded = sorted(fitted)
    for line in report.notes:
        log.info(line)
    if not strict and not report.ok:
        log.warning("non-strict load: %s", report)
    return report

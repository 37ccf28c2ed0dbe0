"""``load_weights``: a checkpoint into a model, as a pipeline of named steps.

    read → detect → convert (once)                      → :class:`Weights`   (:func:`read_weights`)
    head policy → fit → check → load → report            → :class:`LoadReport` (:func:`load_converted`)

:func:`read_source` reads a file or an in-memory state dict, :func:`detect` picks its format,
:func:`convert` renames it to vitkit's names (once: :mod:`vitkit.build` converts a file once, reads
what it says of the model it needs, and hands the same :class:`Weights` to :func:`load_converted`).
:func:`head_policy` keeps the classifier, replaces it (zero-initialised, as the paper fine-tunes,
ViT §3.2) or drops the pre-training pre-logits layer with it; :func:`fit` asks the model to fit each
tensor whose shape differs from its own (``model.fit_tensor``: position embeddings and bias tables
resampled to its geometry); :func:`check` refuses, with ``strict=True`` (the default), a tensor the
model needs but the file lacks, one it cannot place, or one of the wrong shape, naming the first
keys and the detected format, and (:func:`check_values`) a file whose metadata names another model
family, tensors of another kind (an integer tensor in a float slot) and NaN/inf values; :func:`load`
copies the tensors in; :func:`log_report` says what happened.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..registry import get_entry, is_registered
from .formats import Format, detect_format, get_format
from .inspect import candidate_models, describe, infer_architecture
from .io import checkpoint_metadata, decode_metadata, read_checkpoint, unwrap_state_dict

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


@dataclass(frozen=True)
class Weights:
    """A checkpoint read, its format detected and its tensors converted to vitkit's names.

    ``state`` is never changed by loading; ``dropped`` (source key → why) and ``unknown`` come from
    the format's table; ``implies`` are the constructor arguments the format says the weights were
    trained with ({argument: (value, why)}); ``name`` is the file's name (None: a state dict)."""

    format: str
    state: dict[str, torch.Tensor]
    dropped: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    implies: dict[str, tuple[Any, str]] = field(default_factory=dict)
    name: str | None = None

    @property
    def where(self) -> str:
        return f"checkpoint (detected format: {self.format})"

    @functools.cached_property
    def info(self) -> dict[str, Any]:
        """What the tensors say of their architecture (:func:`~vitkit.weights.inspect.infer_architecture`),
        worked out once: building a model asks it for the name, the arguments and the label set."""
        return infer_architecture(self.state)

    @functools.cached_property
    def meta(self) -> dict[str, Any]:
        """The metadata with its JSON values decoded (:func:`~vitkit.weights.io.decode_metadata`), once."""
        return decode_metadata(self.metadata)


# ------------------------------------------------------------------------ read → detect → convert
def read_source(source: str | Path | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Step 1, read: tensors and metadata from a path or an in-memory state dict (numpy arrays
    accepted; a vitkit training checkpoint's record becomes metadata)."""
    if isinstance(source, (str, Path)):
        return read_checkpoint(source)
    return unwrap_state_dict(source), checkpoint_metadata(source)


def detect(raw: Mapping[str, torch.Tensor], metadata: Mapping[str, str], fmt: str | None = None) -> Format:
    """Step 2, detect: the format ``fmt`` names, else the one the keys (and metadata) show."""
    return get_format(fmt) if fmt else detect_format(raw, metadata)


def convert(raw: Mapping[str, torch.Tensor], metadata: Mapping[str, str], f: Format,
            name: str | None = None) -> Weights:
    """Step 3, convert: source names and layouts → vitkit's (the format's key table)."""
    conv = f.convert(raw)
    return Weights(f.name, conv.state, dict(conv.dropped), list(conv.unknown), dict(metadata),
                   dict(f.implies(set(raw))), name)


def read_weights(source: str | Path | Mapping[str, Any] | Weights, fmt: str | None = None) -> Weights:
    """Steps 1–3: read, detect and convert ``source`` (a :class:`Weights` is returned as it is)."""
    if isinstance(source, Weights):
        return source
    raw, metadata = read_source(source)
    name = Path(source).name if isinstance(source, (str, Path)) else None
    return convert(raw, metadata, detect(raw, metadata, fmt), name)


# ------------------------------------------------------------- head policy → fit → check → load
def format_notes(model: nn.Module, weights: Weights) -> list[str]:
    """What the format says the weights were trained with that the model was built without
    (official ``.npz``: tanh GELU, the JAX stem numerics), read from ``model.init_kwargs``."""
    built = model.init_kwargs
    return [f"{why}; build the model with {k}={value!r} for its exact outputs "
            "(create_model(..., pretrained=...) does)"
            for k, (value, why) in weights.implies.items() if k in built and built[k] != value]


@dataclass
class HeadPlan:
    """What :func:`head_policy` decided: the tensors to go on with, whether the classifier is
    replaced (zero-initialised), and what was dropped on purpose and why."""

    state: dict[str, torch.Tensor]
    replace: bool = False
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def head_policy(model: nn.Module, state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                strict: bool = True, where: str = "checkpoint") -> HeadPlan:
    """Step 4, the classifier: keep the file's head when it fits the model's; replace it (zero-init)
    when the class counts differ or the file has none, taking the pre-training pre-logits layer out
    with it (ViT §3.2); refuse (``strict``) a head that reads a pre-logits layer the model lacks."""
    plan = HeadPlan(dict(state))
    has_pre, file_pre = PRE_LOGITS[0] in target, PRE_LOGITS[0] in state
    file_classes = state[HEAD[0]].shape[0] if HEAD[0] in state else 0
    if HEAD[0] in target:
        if file_classes == 0:
            plan.replace = True
            plan.notes.append("the checkpoint has no classifier: head zero-initialised")
        elif state[HEAD[0]].shape != target[HEAD[0]].shape:
            plan.replace = True
            plan.notes.append(f"head replaced: {file_classes} classes in the file, {model.num_classes} in the model "
                              "(zero-initialised, ViT §3.2)")
        elif file_pre and not has_pre:
            msg = (f"the {where} head reads a tanh pre-logits layer (representation_size="
                   f"{state[PRE_LOGITS[0]].shape[0]}) that the model lacks; build the model with "
                   "representation_size=N to use the head as trained, or with another num_classes to replace it")
            if strict:
                raise ValueError(msg)
            plan.replace = True
            plan.notes.append(msg)
    if plan.replace or HEAD[0] not in target:
        why = "classifier replaced" if HEAD[0] in target else "model has no classifier"
        for k in HEAD:
            if plan.state.pop(k, None) is not None:
                plan.dropped.append(f"{k} ({why})")
        if file_pre and not has_pre:
            for k in PRE_LOGITS:
                plan.state.pop(k)
                plan.dropped.append(f"{k} (pre-training head removed with the classifier, ViT §3.2)")
    return plan


@dataclass
class Fitted:
    """What :func:`fit` made of the file's tensors for the model."""

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    resampled: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fit(model: nn.Module, state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
        interpolation: str = "bicubic", skip: tuple[str, ...] = ()) -> Fitted:
    """Step 5, fit: tensors of the model's shape as they are; for every other shape, the model's
    ``fit_tensor`` (resampling what has a meaning at another size) or a mismatch. ``missing``: the
    model's tensors the file does not give, except ``skip`` (a replaced head)."""
    out = Fitted()
    for k, v in state.items():
        if k not in target:
            out.unexpected.append(k)
            continue
        want = target[k].shape
        if v.shape == want:
            out.state[k] = v
            continue
        got = model.fit_tensor(k, v, interpolation)
        if got is None or got[0].shape != want:
            out.mismatched.append(f"{k}: {tuple(v.shape)} in the file, {tuple(want)} in the model")
            continue
        out.state[k] = got[0]
        out.resampled.append(f"{k}: {tuple(v.shape)} -> {tuple(want)}")
        out.notes.append(f"{k}: {got[1]}")
    out.missing = [k for k in target if k not in out.state and k not in skip]
    return out


def _first(names: list[str], n: int = 5) -> str:
    more = f" … (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


FAMILY_NAMES = {"vit": "ViT", "swin": "Swin"}


def _family(name: Any) -> str | None:
    return get_entry(name).family or None if isinstance(name, str) and is_registered(name) else None


def architecture_problem(model: nn.Module, weights: Weights) -> str | None:
    """A vitkit file (or training checkpoint) whose metadata names a model of another family than
    ``model`` (a Swin file into a ViT): whatever the shapes say, the weights are not this network's."""
    saved, built = weights.meta.get("model"), getattr(model, "model_name", None)
    theirs, ours = _family(saved), _family(built)
    if theirs is None or ours is None or theirs == ours:
        return None
    theirs, ours = FAMILY_NAMES.get(theirs, theirs), FAMILY_NAMES.get(ours, ours)
    return (f"{weights.name or 'the state dict'}'s metadata says it holds {saved} (a {theirs}), but the model is "
            f"{built} (a {ours}): its tensors are not this network's. Build the model the file names "
            f"(vitkit.create_model({saved!r}) then load_weights, or model={saved} in a training config), or fine-tune "
            f"a {ours} from a {ours} checkpoint")


def dtype_problems(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> list[str]:
    """Tensors whose kind (floating point or integer/bool) differs from the model's slot: copying
    would cast them silently (an int64 ``cls_token`` into float32). Float precisions convert freely."""
    return [f"{k}: {str(v.dtype).removeprefix('torch.')} in the file, {str(target[k].dtype).removeprefix('torch.')} "
            "in the model" for k, v in state.items()
            if k in target and v.is_floating_point() != target[k].is_floating_point()]


def nonfinite_problems(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Floating-point tensors holding NaN or ±inf, with the counts."""
    out = []
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            nan, inf = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
            out.append(f"{k} ({', '.join(p for p in (f'{nan} NaN' if nan else '', f'{inf} inf' if inf else '') if p)})")
    return out


def check_values(model: nn.Module, weights: Weights, fitted: Fitted, target: Mapping[str, torch.Tensor],
                 strict: bool = True) -> list[str]:
    """Step 6a, what shapes cannot show: the file's named architecture, tensor kinds and finiteness.
    ``strict`` raises ValueError for the first problem; otherwise each is logged as a warning and
    the tensors of the wrong kind are left out (returned, to be reported as mismatched)."""
    problems, wrong_kind = [], dtype_problems(fitted.state, target)
    arch = architecture_problem(model, weights)
    if arch:
        problems.append(arch)
    if wrong_kind:
        problems.append(f"the {weights.where} has {len(wrong_kind)} tensors of another kind than the model's, which "
                        f"would be cast silently: {_first(wrong_kind, 3)}. The file was written for another model or "
                        "by a tool that stores these tensors differently; pass fmt=NAME if the format was misdetected")
    bad = nonfinite_problems(fitted.state)
    if bad:
        problems.append(f"the {weights.where} holds non-finite values (NaN or inf) in {len(bad)} tensors: "
                        f"{_first(bad)}. A model loaded from it outputs NaN; it was probably saved after training "
                        "diverged: use an earlier checkpoint (or pass strict=False to load it anyway)")
    if strict and problems:
        raise ValueError(problems[0])
    for p in problems:
        log.warning(p)
    return [w.split(":")[0] for w in wrong_kind]


def check(model: nn.Module, weights: Weights, report: LoadReport, n_tensors: int, strict: bool = True) -> None:
    """Step 6, check: with ``strict``, refuse other shapes (saying what the file holds and which
    registered models fit it), then missing or unplaceable tensors."""
    if not strict:
        return
    if report.mismatched:
        info = weights.info
        fits = candidate_models(info)
        hint = f" (e.g. {', '.join(fits[:3])})" if fits else ""
        name = model.model_name
        raise ValueError(
            f"the {weights.where} does not fit {name}: {len(report.mismatched)} of {n_tensors} tensors have other "
            f"shapes, first: {_first(report.mismatched, 3)}. The file holds {describe(info)}; create the "
            f"model that matches it{hint}, or fine-tune from it with that architecture"
        )
    if report.missing or report.unexpected:
        parts = []
        if report.missing:
            parts.append(f"{len(report.missing)} model tensors are missing from the file: {_first(report.missing)}")
        if report.unexpected:
            parts.append(f"{len(report.unexpected)} file tensors have no place in the model: {_first(report.unexpected)}")
        raise ValueError(f"{weights.where}: " + "; ".join(parts) +
                         ". Pass strict=False to load the rest, or fmt=NAME if the format was misdetected")


def load(model: nn.Module, state: Mapping[str, torch.Tensor], replace_head: bool = False) -> None:
    """Step 7, load: a zero-initialised classifier first when it is replaced, then the tensors."""
    if replace_head:
        model.reset_classifier(model.num_classes)
    with torch.no_grad():
        result = model.load_state_dict(dict(state), strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # every key was checked against the model


def log_report(report: LoadReport, strict: bool = True) -> None:
    """Step 8, report: the notes at INFO, a non-strict load's gaps as a warning."""
    for line in report.notes:
        log.info(line)
    if not strict and not report.ok:
        log.warning("non-strict load: %s", report)


def load_converted(model: nn.Module, weights: Weights, *, strict: bool = True,
                   interpolation: str = "bicubic") -> LoadReport:
    """Steps 4–8 for weights already read and converted: head policy → fit → check → load → report."""
    report = LoadReport(format=weights.format, metadata=dict(weights.metadata))
    report.dropped += [f"{k} ({why})" for k, why in weights.dropped.items()]
    report.notes += format_notes(model, weights)
    target = model.state_dict()
    plan = head_policy(model, weights.state, target, strict, weights.where)
    report.dropped += plan.dropped
    report.notes += plan.notes
    report.head_replaced = plan.replace
    fitted = fit(model, plan.state, target, interpolation, skip=HEAD if plan.replace else ())
    report.resampled, report.mismatched, report.missing = fitted.resampled, fitted.mismatched, fitted.missing
    report.unexpected = weights.unknown + fitted.unexpected
    report.notes += fitted.notes
    for k in check_values(model, weights, fitted, target, strict):  # non-strict: left out, reported
        report.mismatched.append(f"{k}: {fitted.state.pop(k).dtype} in the file, {target[k].dtype} in the model")
    check(model, weights, report, len(plan.state), strict)
    load(model, fitted.state, plan.replace)
    report.loaded = sorted(fitted.state)
    log_report(report, strict)
    return report


def load_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, Any] | Weights,
    *,
    strict: bool = True,
    fmt: str | None = None,
    interpolation: str = "bicubic",
) -> LoadReport:
    """Load ``source`` (a file path, a state dict in any supported format, or :class:`Weights`
    already read) into ``model``.

    ``fmt`` forces a format instead of detecting it; ``interpolation`` picks how position embeddings
    are resampled when the grid differs (see :mod:`vitkit.weights.resample`). When the checkpoint's
    classifier has another number of classes than ``model.num_classes`` (or the file has none), the
    head is replaced by a zero-initialised one and the report says so. Returns a :class:`LoadReport`.
    """
    return load_converted(model, read_weights(source, fmt), strict=strict, interpolation=interpolation)

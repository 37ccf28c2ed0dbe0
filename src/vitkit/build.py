"""One build path: registry row → constructor arguments → model → optional weights.

Every way of making a model goes through :func:`build`:

- :func:`create_model` — a registered name with the caller's overrides; ``pretrained=True | "tag"``
  (or timm's ``"name.tag"`` spelling) adds a published file, fetched through the cache; a Hub repo
  (``"hf-hub:org/name[@rev]"``) or a local folder (``"local-dir:PATH"``) in timm's, transformers' or
  vitkit's layout is built from its ``config.json`` (:func:`build_from_repo`);
- :func:`build_from_file` — a weights file of any supported format (``vitkit convert``/``predict``),
  a vitkit file or training checkpoint rebuilding the model it was saved from;
- :func:`build_from_checkpoint` — a vitkit training checkpoint already loaded
  (``model_name`` + ``model_kwargs``).

The constructor arguments, later ones winning::

    registry row  <  what the weights require  <  the caller's explicit overrides

where "what the weights require" is, in order, the tag's ``model_kwargs`` and class count, a vitkit
file's saved ``model_kwargs`` (the complete ``init_kwargs`` of the model it was saved from), the
format's facts (official ``.npz``: ``act="gelu_tanh"``, ``stem_numerics="jax"`` for hybrids) and the
file's head (``num_classes``, ``representation_size``; the pre-logits layer only while the caller
keeps the file's classes). A file is read and converted once (:func:`vitkit.weights.load.read_weights`);
the same converted tensors tell what the model needs and are then loaded
(:func:`vitkit.weights.load.load_converted`). The model's ``pretrained_cfg`` is the row's preprocessing,
updated from the tag and the file's metadata, with ``input_size`` the built model's, ``labels``
from the file or the label set, and ``source`` the tag or the file name.

Layers: :mod:`vitkit.registry` (rows) ← :mod:`vitkit.models` (architectures register rows) ←
:mod:`vitkit.weights` (formats, reading, loading, tags) ← this module ← :mod:`vitkit.weights.convert`
and the CLI.
"""
from __future__ import annotations

import fnmatch
import importlib
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from . import models  # noqa: F401  (importing the architectures registers their rows)
from . import registry
from .models.base import ModelBase, PretrainedCfg
from .registry import ModelEntry, get_entry, is_registered
from .weights.hf_hub import is_repo_id, read_repo, repo_tag, tag_file
from .weights.inspect import candidate_models, describe
from .weights.load import Weights, load_converted, read_weights
from .weights.pretrained import TAGS, PretrainedTag, find_tag_by_filename, get_pretrained, labels_for

LABEL_SETS_BY_SIZE = {1000: "imagenet1k", 21843: "imagenet21k"}  # a head's size says which set


def build(name: str | None, overrides: Mapping[str, Any] | None = None, *, tag: PretrainedTag | None = None,
          weights: str | Path | Mapping[str, Any] | Weights | None = None, fmt: str | None = None,
          interpolation: str = "bicubic") -> nn.Module:
    """The model ``name`` (None: the one ``weights`` names or fits) with constructor arguments
    row < ``tag``/``weights`` requirements < ``overrides`` (module docstring); with ``weights``
    (a path, a state dict or :class:`Weights`), loaded strictly into it (``model.load_report``)."""
    overrides = dict(overrides or {})
    w = None if weights is None else read_weights(weights, fmt)  # read → detect → convert, once
    if tag is None and w is not None and w.name:
        tag = find_tag_by_filename(w.name, w.info)  # a local copy of a published file (by name and contents)
    entry = get_entry(name or model_name_for(w))
    kwargs = {**entry.kwargs, **weights_require(tag, w, overrides), **overrides}
    if int(kwargs.get("num_classes", 0) or 0) < 0:
        raise ValueError(f"num_classes={kwargs['num_classes']}: give the number of classes, or 0 (no classifier: the "
                         "model returns pooled features)")
    model = entry.builder(**kwargs)
    model.model_name = entry.name
    model.pretrained_cfg = preprocessing(entry, model, tag if w is not None else None, w)
    if w is not None:
        model.load_report = load_converted(model, w, strict=True, interpolation=interpolation)
    return model


def weights_require(tag: PretrainedTag | None, weights: Weights | None,
                    overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments the tag and the weights need (module docstring, in that order)."""
    need: dict[str, Any] = {}
    if tag is not None:
        need.update(tag.model_kwargs, num_classes=tag.num_classes)
    if weights is None:
        return need
    need.update(saved_kwargs(weights))
    need.update({k: value for k, (value, _) in weights.implies.items()})
    info = weights.info
    file_classes = info["num_classes"]
    headless = tag is not None and tag.num_classes == 0  # a head not for use (orig_in21k): features only
    need["num_classes"] = 0 if headless else file_classes
    rep = info["kwargs"].get("representation_size")
    if rep:
        need["representation_size"] = rep
    if overrides.get("num_classes", need["num_classes"]) != file_classes:
        need.pop("representation_size", None)  # another head: the pre-training head goes whole (ViT §3.2)
    return need


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the constructors record (``img_size``, ``depths``, …)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def saved_kwargs(weights: Weights) -> dict[str, Any]:
    """The constructor arguments a vitkit file (or training checkpoint) was saved with."""
    saved = weights.meta.get("model_kwargs") or {}
    return {k: _tuples(v) for k, v in dict(saved).items()}


def model_name_for(weights: Weights | None) -> str:
    """The registered name a file says it was saved from, else the first that fits its shapes."""
    if weights is None:
        raise ValueError("a model name is needed when there are no weights to infer it from")
    saved = weights.meta.get("model")
    if isinstance(saved, str) and is_registered(saved):
        return saved
    info = weights.info
    fits = candidate_models(info)
    if not fits:
        raise ValueError(f"{weights.name or 'the state dict'} holds {describe(info)}, which matches no registered "
                         "model; pass --model NAME")
    return fits[0]


def _input_hw(model: nn.Module) -> tuple[int, int]:
    size = model.init_kwargs.get("img_size", 224)
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def row_pretrained_cfg(entry: ModelEntry, model: nn.Module) -> PretrainedCfg:
    """The preprocessing record of ``entry``'s row for a model built from it (input size as built)."""
    cfg = PretrainedCfg.from_dict(dict(entry.pretrained_cfg, architecture=entry.name), strict=True)
    cfg.input_size = (cfg.input_size[0], *_input_hw(model))
    return cfg


def preprocessing(entry: ModelEntry, model: nn.Module, tag: PretrainedTag | None,
                  weights: Weights | None) -> PretrainedCfg:
    """The model's ``pretrained_cfg``: the row's, then the tag's and the file's (module docstring)."""
    cfg = row_pretrained_cfg(entry, model)
    if weights is None:
        return cfg
    meta = weights.meta
    if tag is not None:
        cfg.update(tag.cfg())
    cfg.update({k: v for k, v in (meta.get("pretrained_cfg") or {}).items() if k in cfg.keys_()})
    cfg.input_size = (cfg.input_size[0], *_input_hw(model))
    cfg.source = cfg.tag or weights.name
    classes = int(model.init_kwargs.get("num_classes", 0))
    known = LABEL_SETS_BY_SIZE.get(weights.info["num_classes"])
    labels = meta.get("labels") or cfg.labels or labels_for(cfg.label_set or known, classes)
    cfg.labels = list(labels) if labels and len(labels) == classes else None
    cfg.num_classes = classes
    return cfg


# ---------------------------------------------------------------------------- the ways in
def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (e.g. ``"swin_*"``), sorted; with
    ``pretrained``, as timm, the ``name.tag`` of every published checkpoint whose model name or full name
    matches (``"*.orig_in21k"``). Any Hub repo also builds, as ``"hf-hub:org/name"``."""
    if not pretrained:
        return registry.list_models(pattern)
    return sorted(t.name for t in TAGS if is_registered(t.model)
                  and (fnmatch.fnmatch(t.model, pattern) or fnmatch.fnmatch(t.name, pattern)))


def resolve_tag(name: str, pretrained: bool | str = False) -> tuple[str, PretrainedTag | None]:
    """The registered name and the tag that ``name`` (maybe ``"name.tag"``) and ``pretrained`` ask for."""
    if not is_registered(name) and "." in name:
        base, tag_name = name.split(".", 1)
        if is_registered(base):
            tag = get_pretrained(base, tag_name)  # a clear error for an unknown tag
            if isinstance(pretrained, str) and pretrained not in (tag.tag, tag.name):
                raise ValueError(f"{name!r} names the tag {tag_name!r} but pretrained={pretrained!r}; give one of them")
            return base, tag
    get_entry(name)  # a clear error for an unknown name, before any tag lookup
    return name, get_pretrained(name, pretrained) if pretrained else None


def create_model(
    name: str,
    *,
    pretrained: bool | str = False,
    num_classes: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model.

    ``pretrained`` is ``False``, ``True`` (the default tag) or a tag name; the weights are fetched
    (or found in the cache) and loaded with the head replaced when ``num_classes`` differs. timm's
    ``"name.tag"`` spelling names the tag too (``"vit_base_patch16_224.augreg_in21k"``): with
    ``pretrained=True`` its weights, without them a model shaped as that tag's (classes, GELU).
    ``img_size`` and any constructor argument (``drop_path_rate=0.1``, ``window_size=12``, …)
    override the variant's row and what the weights need.
    """
    if img_size is not None:
        overrides["img_size"] = img_size
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if is_repo_id(name):
        return build_from_repo(name, pretrained, **overrides)
    base, tag = resolve_tag(name, pretrained)
    if tag is None or not pretrained:
        return build(base, overrides, tag=tag)
    return build(base, overrides, tag=tag, weights=tag_file(tag))


def build_from_repo(name: str, pretrained: bool = True, **overrides: Any) -> nn.Module:
    """The model a Hub repo (``"hf-hub:org/name[@rev]"``) or a local folder (``"local-dir:PATH"``) holds:
    the architecture from its ``config.json`` (timm, transformers or vitkit), with its weights when
    ``pretrained`` and its preprocessing and label names (:mod:`vitkit.weights.hf_hub`)."""
    if not isinstance(pretrained, bool):
        raise ValueError(f"{name!r} is a repo: pretrained is True (its weights) or False (its architecture), "
                         f"not {pretrained!r}; pick a revision with {name.split('@')[0]}@REVISION")
    repo = read_repo(name)
    tag = repo_tag(repo)
    if not pretrained:
        model = build(tag.model, overrides, tag=tag)
        model.pretrained_cfg.update({k: v for k, v in tag.cfg().items() if k in ("mean", "std", "crop_pct", "interpolation")})
        return model
    return build(tag.model, overrides, tag=tag, weights=repo.weights_file())


def build_from_file(path: str | Path | Weights, name: str | None = None, *, fmt: str | None = None,
                    tag: PretrainedTag | None = None, **overrides: Any) -> nn.Module:
    """The model ``name`` (default: the one the file was saved from, else the first registered name
    that fits its shapes) shaped for the checkpoint at ``path`` unless ``overrides`` say otherwise,
    with the checkpoint loaded strictly and its preprocessing and labels attached."""
    return build(name, overrides, tag=tag, weights=path, fmt=fmt)


def build_from_checkpoint(checkpoint: Mapping[str, Any], *, ema: bool = False, **overrides: Any) -> nn.Module:
    """The model a vitkit training checkpoint (``model_name``, ``model_kwargs``, ``model``; already
    loaded) was written from, with its weights (``ema``: the EMA copy), its preprocessing record and
    its classes as labels. A model that was built straight from a vitkit class rather than a registry
    name (``Trainer(model=VisionTransformer(...))``) is rebuilt from that class (``model_class``)."""
    if "model" not in checkpoint or "model_name" not in checkpoint:
        raise ValueError("not a vitkit training checkpoint (no 'model'/'model_name' entries); "
                         "for weights in other formats use build_from_file or vitkit.load_weights")
    if ema:
        if "model_ema" not in checkpoint:
            raise ValueError("the checkpoint holds no EMA weights (the run had ema_decay=0)")
        state = checkpoint["model_ema"]
        if isinstance(state, Mapping) and isinstance(state.get("module"), Mapping):
            state = state["module"]  # checkpoint-last.pt keeps the EMA's own state ({"module": …, …})
        checkpoint = {**checkpoint, "model": state}
    name = str(checkpoint["model_name"])
    if is_registered(name):
        return build(name, overrides, weights=checkpoint)
    cls = _model_class(checkpoint.get("model_class"), name)
    w = read_weights(checkpoint)
    model = cls(**{**saved_kwargs(w), **overrides})
    model.model_name = name
    if isinstance(checkpoint.get("preprocess"), Mapping):
        model.pretrained_cfg.update({k: v for k, v in checkpoint["preprocess"].items() if k in PretrainedCfg.keys_()})
    if checkpoint.get("classes"):
        model.pretrained_cfg.labels = [str(c) for c in checkpoint["classes"]]
    model.load_report = load_converted(model, w, strict=True)
    return model


def _model_class(path: Any, name: str) -> type[ModelBase]:
    """The vitkit architecture class a checkpoint names (``"vitkit.models.vit.VisionTransformer"``)."""
    module, _, attr = str(path or "").rpartition(".")
    cls = getattr(importlib.import_module(module), attr, None) if module.startswith("vitkit.") else None
    if not (isinstance(cls, type) and issubclass(cls, ModelBase)):
        raise ValueError(f"the checkpoint's model {name!r} is neither a registered name nor a vitkit architecture "
                         f"class (model_class={path!r}); see vitkit.list_models()")
    return cls


registry.create_model = create_model  # type: ignore[attr-defined]  (the older vitkit.registry.create_model)

"""What every vitkit model says about itself, so that no consumer has to ask "is this a ViT or a Swin?".

- :class:`PretrainedCfg`: the typed preprocessing record (mean, std, input size, crop, interpolation,
  label names, where the weights came from) that training, eval, predict and analyze read from the
  model, never from the registry row.
- :class:`ModelBase`: records the exact constructor arguments (``init_kwargs``) and declares the
  small protocol the rest of the package uses — the Transformer blocks (FSDP, checkpointing), a
  layer id per parameter name (layer-wise LR decay), the attention layers (analysis), the names
  trained without weight decay, how to fit a file's tensor to this model's geometry (resampling),
  the position embeddings on their grid and the pixel patch projection (the paper's Fig. 7), and
  the shape of its feature pyramid (dense backbones).

``create_model(model.model_name, **model.init_kwargs)`` rebuilds the same network; checkpoints,
``vitkit convert`` files and eval store and read that one record.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping

import torch
from torch import nn


@dataclass
class PretrainedCfg:
    """How inputs must be prepared for a model, and what its outputs mean.

    Evaluation resizes the shorter side to ``input_size / crop_pct`` with ``interpolation``, centre-crops
    to ``input_size``, scales to [0, 1] and normalises with ``mean``/``std``. ``labels`` are the class
    names in index order (None: unnamed); ``label_set`` names a shipped list ("imagenet1k",
    "imagenet21k"). ``source`` says where the weights came from (a tag, a file, a checkpoint).

    It reads like the dict timm users know (``cfg["mean"]``, ``cfg.get("crop_pct")``), but only its
    fields exist: a misspelt key is an error, not a silently ignored setting.
    """

    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    labels: list[str] | None = None
    label_set: str | None = None
    num_classes: int | None = None
    architecture: str = ""
    tag: str | None = None
    url: str | None = None
    source: str | None = None
    license: str | None = None

    @classmethod
    def keys_(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, strict: bool = False) -> "PretrainedCfg":
        """A record from a mapping (a saved checkpoint's, a file's metadata); unknown keys are
        dropped unless ``strict``."""
        known = cls.keys_()
        extra = sorted(set(d) - set(known))
        if strict and extra:
            raise KeyError(f"unknown preprocessing field(s) {extra}; fields are {', '.join(known)}")
        out = cls()
        out.update({k: v for k, v in d.items() if k in known})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples): JSON- and ``torch.load(weights_only=True)``-safe."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def copy(self) -> "PretrainedCfg":
        return dataclasses.replace(self, labels=list(self.labels) if self.labels is not None else None)

    # ---- mapping face
    def _check(self, key: str) -> None:
        if key not in self.keys_():
            raise KeyError(f"{key!r} is not a preprocessing field; fields are {', '.join(self.keys_())}")

    def __getitem__(self, key: str) -> Any:
        self._check(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._check(key)
        if key in ("mean", "std", "input_size") and value is not None:
            value = tuple(value)
        if key == "labels" and value is not None:
            value = list(value)
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys_() and getattr(self, key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self.keys_():
            return default
        value = getattr(self, key)
        return default if value is None else value

    def update(self, other: Mapping[str, Any] | "PretrainedCfg" = (), **kw: Any) -> None:
        items = dict(other.to_dict() if isinstance(other, PretrainedCfg) else other, **kw)
        for k, v in items.items():
            self[k] = v

    def keys(self) -> Iterator[str]:
        return iter(self.keys_())

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((k, getattr(self, k)) for k in self.keys_())


@dataclass
class AttentionLayer:
    """One attention layer of a model, in forward order (what the analyses need to know of it)."""

    index: int  # position among the model's attention layers (0 = first)
    name: str  # module path, e.g. "blocks.3.attn" or "stages.1.blocks.0.attn"
    module: nn.Module
    block: nn.Module  # the block that owns it (its input gives a windowed block's geometry)
    stage: int  # stage of a hierarchical model (0 for a plain one)
    stride: int  # input pixels per token along each side
    num_prefix_tokens: int  # tokens without a position in the image ([class])
    windowed: bool  # True for window attention (Swin)


def _plain(value: Any) -> Any:
    """Constructor arguments as saved: tuples stay tuples, other sequences become lists."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


class ModelBase(nn.Module):
    """Base of every vitkit architecture: the self-description protocol (module docstring).

    Subclasses get ``init_kwargs`` recorded automatically: every argument of their ``__init__``,
    defaults included, as bound when the outermost constructor ran. Methods that change the
    geometry or the head (``set_input_size``, ``reset_classifier``) keep it up to date through
    :meth:`_record`.
    """

    feature_pyramid: ClassVar[str] = "plain"  # "plain" (one stride, ViT) or "hierarchical" (Swin)
    init_kwargs: dict[str, Any]
    model_name: str
    pretrained_cfg: PretrainedCfg

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def recorded_init(self: "ModelBase", *args: Any, **kwargs: Any) -> None:
            outer = "_init_depth" not in self.__dict__
            self.__dict__["_init_depth"] = self.__dict__.get("_init_depth", 0) + 1
            try:
                init(self, *args, **kwargs)
            finally:
                self.__dict__["_init_depth"] -= 1
                if outer:
                    del self.__dict__["_init_depth"]
            if outer:
                bound = sig.bind(self, *args, **kwargs)
                bound.apply_defaults()
                self.init_kwargs = {k: _plain(v) for k, v in bound.arguments.items()
                                    if k != "self" and sig.parameters[k].kind not in
                                    (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
                if "model_name" not in self.__dict__:
                    self.model_name = cls.__name__
                if "pretrained_cfg" not in self.__dict__:
                    self.pretrained_cfg = self.default_pretrained_cfg()

        cls.__init__ = recorded_init  # type: ignore[method-assign]

    def _record(self, **changes: Any) -> None:
        """Keep ``init_kwargs`` equal to what rebuilds the model as it is now."""
        if "init_kwargs" in self.__dict__:
            self.init_kwargs.update({k: _plain(v) for k, v in changes.items()})

    def default_pretrained_cfg(self) -> PretrainedCfg:
        """The record of a model built without a registry row (direct construction)."""
        chans = int(self.init_kwargs.get("in_chans", 3))
        size = self.init_kwargs.get("img_size", 224)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return PretrainedCfg(mean=(0.5,) * chans, std=(0.5,) * chans, input_size=(chans, int(h), int(w)))

    # ------------------------------------------------------------------------------- the protocol
    def transformer_blocks(self) -> list[nn.Module]:
        """The Transformer blocks in forward order: the units FSDP shards and checkpointing recomputes."""
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        """L: the number of Transformer blocks (layer ids run 0 … L + 1)."""
        return len(self.transformer_blocks())

    def layer_id(self, name: str) -> int:
        """Depth of parameter ``name`` for layer-wise LR decay (BEiT §2.4): 0 for the embeddings,
        1 … L for the blocks in forward order, L + 1 for the final norm and the head."""
        raise NotImplementedError

    def attention_layers(self) -> list[AttentionLayer]:
        """The attention layers in forward order."""
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Names (substrings) of parameters trained without weight decay."""
        return set()

    def fit_tensor(self, key: str, value: torch.Tensor, interpolation: str = "bicubic"
                   ) -> tuple[torch.Tensor, str] | None:
        """A file's tensor ``key`` whose shape differs from this model's, fitted to the model's geometry
        (position embeddings, bias tables resampled), with a note; None when no rule applies (then the
        shapes are a genuine mismatch)."""
        return None

    def position_embedding_grid(self) -> torch.Tensor:
        """(Gh, Gw, D) learned absolute position embeddings of the patch grid (no [class] token)."""
        raise ValueError(f"{type(self).__name__} has no learned absolute position embedding")

    def pixel_patch_projection(self) -> nn.Conv2d:
        """The convolution that embeds image pixels as patch tokens (its filters: the paper's Fig. 7)."""
        raise ValueError(f"{type(self).__name__} has no pixel patch projection")

    def input_size_multiple(self) -> int:
        """Input heights and widths must be multiples of this (1: any size, the model pads)."""
        return 1

    def export_size_oblivious(self) -> bool:
        """Whether a dynamic-shape export traces this model size-obliviously (no special case for a
        size of 1; :func:`vitkit.export.trace`): for models whose layout depends on how many
        windows fit, which must not be frozen to the example's count."""
        return False

    @classmethod
    def config_from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
        """What a vitkit-named state dict of this architecture says of the model it came from (sizes read
        off the shapes: constructor arguments under ``"kwargs"``, plus ``"num_classes"`` and the native
        geometry where it can be seen), or None when the keys are not this architecture's."""
        return None

    @classmethod
    def describe_config(cls, info: Mapping[str, Any]) -> str:
        """One line for error messages about a state dict :meth:`config_from_state_dict` read."""
        return f"a {cls.__name__} with {dict(info.get('kwargs', {}))}"

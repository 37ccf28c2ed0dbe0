"""Model-repo configs ↔ vitkit constructor arguments, per architecture: the ``config.json`` twin of
the key tables (timm's ``model_args``, transformers' ``ViTConfig`` / ``SwinConfig`` fields), read by
:mod:`vitkit.weights.hf_hub` and written by :mod:`vitkit.weights.hub_export`. Like the key tables, this
is where a format's per-architecture names live; what vitkit has no equal of raises :class:`Unsupported`
naming it.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import nn

from .table import from_vitkit

log = logging.getLogger(__name__)
VIT, SWIN = "vit", "swin"  # the registry's families (and transformers' model_type)
TRANSFORMERS_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
TIMM_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_tanh"}
TIMM_CLASSIFIER = {VIT: "head", SWIN: "head.fc"}
FAMILY_BASE = {VIT: "vit_base_patch16_224", SWIN: "swin_tiny_patch4_window7_224"}  # timm names any size builds from
HYBRID_STEM = (3, 4, 9)  # the ResNet-BiT stages of the R50+ViT-B/16 hybrid (ViT §3.1, timm vit_base_r50_s16_*)


def timm_architecture(model: nn.Module, names: set[str] | frozenset[str]) -> str:
    """The timm model name a repo's ``architecture`` gives: the model's own when timm has it (``names``),
    the hybrid's factory for a hybrid (its ResNet stem is fixed by the name), else the family's base."""
    name = getattr(model, "model_name", "")
    if name in names:
        return name
    if model.init_kwargs.get("stem_depths"):
        return "vit_base_r50_s16_224"
    return FAMILY_BASE[family_of(model)]


class Unsupported(ValueError):
    """A repo config (or a model) that has no exact equal on the other side."""


def pair_arg(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def img_size_arg(v: Any) -> int | tuple[int, int]:
    h, w = pair_arg(v)
    return h if h == w else (h, w)


def timm_to_vitkit(arch: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """timm ``model_args`` → vitkit constructor arguments (only what differs from the row matters, but
    every architectural one is passed); an argument vitkit has no equal of is refused by name."""
    from ...registry import get_entry

    family = get_entry(arch).family
    out: dict[str, Any] = {}
    args = dict(args)
    for key in ("img_size",):
        if key in args:
            out[key] = img_size_arg(args.pop(key))
    for key in ("patch_size", "in_chans", "num_classes", "embed_dim", "qkv_bias", "window_size"):
        if key in args:
            out[key] = args.pop(key)
    for key in ("drop_rate", "proj_drop_rate", "attn_drop_rate", "drop_path_rate", "pos_drop_rate",
                "patch_drop_rate", "dynamic_img_size", "dynamic_img_pad", "strict_img_size", "weight_init", "fix_init"):
        args.pop(key, None)  # training-time or input-handling options: no effect on the eval network
    if family == VIT:
        for key in ("depth", "num_heads", "init_values"):
            if key in args:
                out[key] = args.pop(key)
        pool = args.pop("global_pool", "token")
        class_token = args.pop("class_token", True)
        fc_norm = args.pop("fc_norm", None)
        if pool == "token" and class_token:
            if fc_norm:
                raise Unsupported("fc_norm=True with the class token")
        elif pool == "avg" and not class_token and fc_norm is False:
            out["global_pool"] = "avg"  # vitkit's GAP: final norm on every token, then the mean
        else:
            raise Unsupported(f"global_pool={pool!r}, class_token={class_token}, fc_norm={fc_norm} "
                                "(vitkit has the [class] token, or class_token=False + global_pool='avg' + fc_norm=False)")
        dim = out.get("embed_dim", get_entry(arch).kwargs.get("embed_dim"))  # timm's ViT rows all have ratio 4
        out["mlp_dim"] = int(dim * float(args.pop("mlp_ratio", 4.0)))
        act = args.pop("act_layer", "gelu")
        if act not in TIMM_ACT:
            raise Unsupported(f"act_layer={act!r}")
        out["act"] = TIMM_ACT[act]
    else:
        for key in ("depths", "num_heads"):
            if key in args:
                out[key] = tuple(args.pop(key))
        if "mlp_ratio" in args:
            out["mlp_ratio"] = float(args.pop("mlp_ratio"))
        if args.pop("global_pool", "avg") != "avg":
            raise Unsupported("a Swin global_pool other than 'avg'")
    defaults = {"qk_norm": False, "reg_tokens": 0, "no_embed_class": False, "pre_norm": False, "final_norm": True,
                "pos_embed": "learn", "proj_bias": True, "head_dim": None, "always_partition": False,
                "pool_include_prefix": False}
    odd = {k: v for k, v in args.items() if defaults.get(k, object()) != v}
    if odd:
        raise Unsupported(f"timm model_args {odd}")
    return out


def transformers_to_vitkit(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A transformers ``config.json`` (``model_type`` vit or swin) → a default registered name and the
    vitkit constructor arguments; what vitkit has no equal of is refused by name."""
    kind = cfg["model_type"]
    classes = len(cfg.get("id2label") or {}) or int(cfg.get("num_labels", 0) or 0)
    archs = cfg.get("architectures") or []
    if archs and not any(a.endswith("ForImageClassification") for a in archs):
        classes = 0  # ViTModel / SwinModel: features only
    act = cfg.get("hidden_act", "gelu")
    if act not in TRANSFORMERS_ACT:
        raise Unsupported(f"hidden_act={act!r}")
    common = dict(img_size=img_size_arg(cfg.get("image_size", 224)), patch_size=int(cfg.get("patch_size", 16)),
                  in_chans=int(cfg.get("num_channels", 3)), num_classes=classes, qkv_bias=bool(cfg.get("qkv_bias", True)))
    if kind == VIT:
        kwargs = dict(common, embed_dim=int(cfg["hidden_size"]), depth=int(cfg["num_hidden_layers"]),
                      num_heads=int(cfg["num_attention_heads"]), mlp_dim=int(cfg["intermediate_size"]),
                      act=TRANSFORMERS_ACT[act], norm_eps=float(cfg.get("layer_norm_eps", 1e-12)))
        arch = "vit_base_patch16_224"
    elif kind == SWIN:
        if abs(float(cfg.get("layer_norm_eps", 1e-5)) - 1e-5) > 1e-12:
            raise Unsupported(f"layer_norm_eps={cfg.get('layer_norm_eps')} (vitkit's Swin uses 1e-5)")
        if act != "gelu":
            raise Unsupported(f"a Swin with hidden_act={act!r}")
        kwargs = dict(common, embed_dim=int(cfg["embed_dim"]), depths=tuple(cfg["depths"]),
                      num_heads=tuple(cfg["num_heads"]), window_size=int(cfg["window_size"]),
                      mlp_ratio=float(cfg.get("mlp_ratio", 4.0)), ape=bool(cfg.get("use_absolute_embeddings", False)))
        arch = "swin_tiny_patch4_window7_224"
    elif kind in ("vit-hybrid", "vit_hybrid"):
        raise Unsupported("transformers' vit-hybrid (BiT backbone) layout is not among vitkit's key tables yet; "
                          "the official R50+ViT .npz files load (vitkit.load_weights)")
    else:
        raise Unsupported(f"model_type={kind!r} (vitkit reads vit and swin)")
    return arch, kwargs


def family_of(model: nn.Module) -> str:
    """Which of this module's tables a vitkit model takes (the formats know the architectures)."""
    from ...models.swin import SwinTransformer
    from ...models.vit import VisionTransformer

    if isinstance(model, VisionTransformer):
        return VIT
    if isinstance(model, SwinTransformer):
        return SWIN
    raise ValueError(f"save_pretrained writes vitkit ViT and Swin models, not {type(model).__name__}")


def _size(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(v[0]), int(v[1])]


def vitkit_to_timm(model: nn.Module) -> dict[str, Any]:
    """The timm constructor arguments that build the same network as ``model`` (refusing what timm lacks)."""
    kw, family = model.init_kwargs, family_of(model)
    common = dict(img_size=_size(kw["img_size"]), patch_size=kw["patch_size"], in_chans=kw["in_chans"],
                  num_classes=kw["num_classes"], embed_dim=kw["embed_dim"], qkv_bias=kw["qkv_bias"])
    if family == SWIN:
        if kw.get("ape"):
            raise Unsupported("timm's Swin has no absolute position embedding (ape=True); it cannot be exported "
                             "to a timm repo")
        return dict(common, depths=list(kw["depths"]), num_heads=list(kw["num_heads"]), window_size=kw["window_size"],
                    mlp_ratio=float(kw["mlp_ratio"]), global_pool="avg")
    if kw.get("representation_size"):
        raise Unsupported("timm's ViT has no tanh pre_logits layer (representation_size="
                         f"{kw['representation_size']}); fine-tune a new head (num_classes=N) before exporting")
    if kw.get("stem_depths"):
        if tuple(kw["stem_depths"]) != HYBRID_STEM or kw["patch_size"] != 1:
            raise Unsupported(f"timm's R50+ViT hybrid has the ResNet stages {HYBRID_STEM} and 1x1 patches, this "
                              f"model {tuple(kw['stem_depths'])} and patch {kw['patch_size']}")
        if kw.get("stem_numerics") != "timm":
            raise Unsupported("timm's R50+ViT stem computes with its own epsilons (stem_numerics='timm'), this "
                              f"model with stem_numerics={kw.get('stem_numerics')!r} (the official JAX code's): "
                              "timm's logits would differ (3e-4 relative on random weights); save it with "
                              "vitkit.save_pretrained only after fine-tuning with stem_numerics='timm', or keep "
                              "vitkit's own file (vitkit convert)")
    if kw.get("norm_eps", 1e-6) != 1e-6:
        log.warning("timm's ViT uses LayerNorm eps 1e-6, this model %s: timm's logits will differ slightly",
                    kw["norm_eps"])
    mlp = kw.get("mlp_dim") or 4 * kw["embed_dim"]
    avg = kw["global_pool"] == "avg"
    out = dict(common, depth=kw["depth"], num_heads=kw["num_heads"], mlp_ratio=mlp / kw["embed_dim"],
               global_pool=kw["global_pool"], class_token=not avg, fc_norm=False, act_layer=kw["act"])
    if kw.get("init_values"):
        out["init_values"] = kw["init_values"]
    return out


def timm_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights in timm's key names (the timm format's table, read backwards)."""
    from .timm import RULES

    head = TIMM_CLASSIFIER[family_of(model)]  # ViT's classifier is timm's "head", Swin's "head.fc"
    rules = [r for r in RULES if not r.src.startswith("head") or r.src.rsplit(".", 1)[0] == head]
    return {k: v.detach().contiguous().cpu() for k, v in from_vitkit(model.state_dict(), rules).items()}

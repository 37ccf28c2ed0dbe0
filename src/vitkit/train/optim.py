"""Optimiser parameter groups (weight decay, layer-wise LR decay), optimisers and LR schedules."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def layer_ids(model: nn.Module) -> tuple[int, callable]:
    """(L, f): f(name) is the depth of a parameter, 0 for the embeddings, 1..L for the blocks in order
    and L+1 for the final norm and head — the layering used by layer-wise LR decay (BEiT §2.4). The
    model says it (:meth:`vitkit.models.base.ModelBase.layer_id`)."""
    if not callable(getattr(model, "layer_id", None)):
        raise ValueError(f"layer_decay needs a model that numbers its layers (a vitkit model's layer_id); "
                         f"{type(model).__name__} does not; set layer_decay=1")
    return model.num_layers, model.layer_id


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """Split trainable parameters into optimiser groups.

    No weight decay on 1-D parameters (norm scales, biases) and on the names the model lists in
    ``no_weight_decay()`` (position embeddings, class token, relative bias tables; Swin §A2.1).
    With ``layer_decay`` < 1 each group also carries ``lr_scale = layer_decay ** (L + 1 - depth)``.
    """
    skip = set(model.no_weight_decay()) if callable(getattr(model, "no_weight_decay", None)) else set()
    L, depth_of = layer_ids(model) if layer_decay < 1.0 else (0, lambda name: 0)
    groups: dict[tuple[bool, int], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_wd = p.ndim <= 1 or name.endswith(".bias") or any(s in name for s in skip)
        depth = depth_of(name)
        g = groups.setdefault((no_wd, depth), {
            "params": [], "param_names": [], "weight_decay": 0.0 if no_wd else weight_decay,
            "lr_scale": layer_decay ** (L + 1 - depth) if layer_decay < 1.0 else 1.0})
        g["params"].append(p)
        g["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]


def build_optimizer(groups: list[dict], name: str, lr: float, *, momentum: float = 0.9,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """``adamw`` (decoupled decay, Loshchilov & Hutter), ``adam`` (L2 added to the gradient, as
    torch.optim.Adam does) or ``sgd`` (momentum, as in the ViT fine-tuning recipe)."""
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    # foreach: one kernel per group and operation instead of one per tensor (torch picks it on CUDA
    # only; on the CPU it is also faster for the many small tensors of a ViT)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, foreach=True)
    raise ValueError(f"optimizer={name!r} is unknown; choose adamw, adam or sgd")


@dataclass
class WarmupDecay:
    """LR multiplier at optimiser step s: linear warm-up from ``start`` to 1 over ``warmup`` steps,
    then ``cosine``, ``linear`` or ``constant`` down to ``end`` at step ``total``."""

    total: int
    warmup: int = 0
    kind: str = "cosine"
    start: float = 0.0
    end: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start + (1.0 - self.start) * step / self.warmup
        if self.kind == "constant" or self.total <= self.warmup:
            return 1.0
        p = min((step - self.warmup) / (self.total - self.warmup), 1.0)
        if self.kind == "cosine":
            return self.end + (1.0 - self.end) * 0.5 * (1.0 + math.cos(math.pi * p))
        if self.kind == "linear":
            return self.end + (1.0 - self.end) * (1.0 - p)
        raise ValueError(f"schedule={self.kind!r} is unknown; choose cosine, linear or constant")

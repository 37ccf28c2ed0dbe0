"""Exponential moving average of the weights (Polyak averaging; the ViT paper used decay 0.9999)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .fsdp import full_tensor


class ModelEma:
    """A frozen copy of ``model`` updated after each optimiser step: e ← d·e + (1−d)·w.

    With ``warmup`` the decay grows as min(d, (1 + n) / (10 + n)) over the first updates (the
    ``num_updates`` rule of TensorFlow's ExponentialMovingAverage), so short runs are not dominated by
    the initial weights. Buffers are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_p = [p for p in self.module.parameters()]
        new_p = [full_tensor(p.detach()) for p in model.parameters()]  # FSDP: the shards gathered
        torch._foreach_lerp_(ema_p, new_p, 1.0 - d)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])

"""The Transformer MLP: Linear → GELU → dropout → Linear → dropout."""
from __future__ import annotations

import torch
from torch import nn

from . import workspace
from .fastpath import may_take


def make_gelu(kind: str) -> nn.Module:
    """``"gelu"`` is the exact erf form (PyTorch ports); ``"gelu_tanh"`` is Flax's default (official JAX)."""
    if kind == "gelu":
        return nn.GELU()
    if kind == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    raise ValueError(f"act_layer={kind!r} is not supported; choose 'gelu' or 'gelu_tanh'")


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, act: str = "gelu", drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = make_gelu(act)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.hidden(x)))

    def hidden(self, x: torch.Tensor, reuse: bool = False) -> torch.Tensor:
        """The activation before ``fc2``: fc1 → GELU → dropout. ``reuse`` (fused inference paths,
        which read the result at once and have checked that no hook watches this MLP): fc1 writes
        into a buffer kept between calls (:func:`vitkit.layers.workspace.linear`)."""
        h = workspace.linear("mlp.hidden", self.fc1, x) if reuse else self.fc1(x)
        if isinstance(self.act, nn.GELU) and may_take(self, inference=True, traceable=True):
            # fast inference: GELU in place, one 4×-wide activation buffer instead of two
            h = torch.ops.aten.gelu_(h, approximate=self.act.approximate)
        else:
            h = self.act(h)
        return self.drop1(h)

"""Patch embedding: a P×P stride-P convolution, the same map as flatten + linear (ViT §3.1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fastpath import symbolic


def to_2tuple(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair (H, W), got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


class PatchEmbed(nn.Module):
    """(B, C, H, W) → (B, H/P, W/P, D) in NHWC, optionally normalised (Swin) or flattened (ViT).

    Input sizes that are not multiples of the patch size raise a clear error unless ``pad`` is set
    (Swin pads on the bottom/right, as the official code does).
    """

    def __init__(
        self,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm: bool = False,
        pad: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.patch_size = to_2tuple(patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps) if norm else nn.Identity()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        ph, pw = self.patch_size
        if (self.pad and symbolic(H, W)) or H % ph or W % pw:  # traced: pad by what may be 0, no branch
            if not self.pad:
                raise ValueError(
                    f"input size {H}x{W} is not a multiple of the patch size {ph}x{pw}; "
                    f"resize or crop the image to a multiple of {ph}x{pw}"
                )
            x = F.pad(x, (0, (W + pw - 1) // pw * pw - W, 0, (H + ph - 1) // ph * ph - H))  # no negative floor division
        B, C, H, W = x.shape
        Gh, Gw = H // ph, W // pw
        # The P×P stride-P convolution as one matmul on the unfolded patches (same weights, same sums):
        # its output is (B, Gh, Gw, D) contiguous, where the convolution's NCHW output would need a
        # copy before the norm and the token sequence.
        patches = x.reshape(B, C, Gh, ph, Gw, pw).permute(0, 2, 4, 1, 3, 5)
        if symbolic(Gh, Gw):  # whether the permuted patches are viewable depends on the size: copy, unasked
            patches = patches.clone(memory_format=torch.contiguous_format)
        patches = patches.reshape(B, Gh, Gw, C * ph * pw)
        x = F.linear(patches, self.proj.weight.reshape(self.proj.out_channels, -1), self.proj.bias)
        return self.norm(x)  # (B, H/P, W/P, D)

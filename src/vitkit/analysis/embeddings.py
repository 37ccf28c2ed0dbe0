"""What the embeddings learn (ViT paper §4.5, Fig. 7 left and centre).

- :func:`position_embedding_similarity`: cosine similarity between the learned position embedding
  of each patch and every other; the paper finds 2-D structure (rows and columns) emerging from 1-D
  embeddings.
- :func:`patch_embedding_components`: principal components of the patch-embedding filters, shown
  as RGB tiles; they resemble plausible basis functions for each patch's fine structure.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..train.distributed import unwrap_model


def _grid_position_embeddings(model: nn.Module) -> torch.Tensor:
    """(Gh, Gw, D) learned absolute position embeddings of the patch grid (no [class] token)."""
    model = unwrap_model(model)
    if not callable(getattr(model, "position_embedding_grid", None)):
        raise TypeError(f"position-embedding analysis supports vitkit ViT and Swin models, not {type(model).__name__}")
    return model.position_embedding_grid()


@torch.no_grad()
def position_embedding_similarity(model: nn.Module) -> torch.Tensor:
    """(Gh, Gw, Gh, Gw): entry [i, j, k, l] is the cosine similarity between the position embedding
    of patch (i, j) and that of patch (k, l) (Fig. 7 centre: tile (i, j) is the map [i, j])."""
    pos = _grid_position_embeddings(model).float()
    Gh, Gw, D = pos.shape
    unit = F.normalize(pos.reshape(Gh * Gw, D), dim=-1)
    return (unit @ unit.T).reshape(Gh, Gw, Gh, Gw)


@torch.no_grad()
def patch_embedding_components(model: nn.Module, n: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``n`` principal components of the patch-embedding filters (Fig. 7 left).

    The D filters of the P×P×C projection are points in C·P·P dimensions; after centring, their
    principal directions are returned as (n, C, P, P) tensors (unit norm, sign chosen so the sum
    is non-negative), with the fraction of variance each explains, (n,).
    """
    model = unwrap_model(model)
    if not callable(getattr(model, "pixel_patch_projection", None)):
        raise TypeError(f"{type(model).__name__} has no patch_embed.proj convolution to analyse")
    proj = model.pixel_patch_projection()
    w = proj.weight.detach().double()  # (D, C, P, P)
    D, C, Ph, Pw = w.shape
    x = w.reshape(D, C * Ph * Pw)
    x = x - x.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)  # rows of vh: principal directions
    n = min(n, vh.shape[0])
    comps = vh[:n]
    sign = torch.where(comps.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    var = s**2
    return (comps * sign).reshape(n, C, Ph, Pw).float(), (var[:n] / var.sum()).float()

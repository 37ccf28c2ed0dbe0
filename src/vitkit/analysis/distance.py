"""Mean attention distance per head and layer (ViT paper §4.5, Fig. 7 right, Appendix D.7).

For each query patch, the distance in input pixels to every key patch weighted by the attention
it pays them; averaged over queries and images. It is the transformer's analogue of a receptive
field size: small for local heads, about half the image for global ones.

Tokens without a place in the image (the [class] token) are left out: their rows are skipped and
their column is removed from each row, which is then renormalised to sum to one. Swin windows are
mapped back to the feature map (shift undone, padding skipped).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from .capture import AttentionLayer, WindowGeometry, capture_attention, window_token_coords


def patch_distances(grid: tuple[int, int], stride: float) -> torch.Tensor:
    """(N, N) Euclidean distances in pixels between the centres of a Gh×Gw grid of patches
    (row-major) whose side is ``stride`` pixels."""
    Gh, Gw = grid
    yx = torch.stack(torch.meshgrid(torch.arange(Gh), torch.arange(Gw), indexing="ij"), -1).reshape(-1, 2)
    return torch.cdist(yx.double(), yx.double()).float() * stride  # (N, N)


def _distance_sums(attn: torch.Tensor, dist: torch.Tensor, query_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head (sum over queries of the attention-weighted distance, number of queries)."""
    d = (attn * dist).sum(dim=-1)  # (..., heads, N)
    w = torch.ones_like(d) if query_mask is None else query_mask.to(d.dtype).expand_as(d)
    dims = [i for i in range(d.ndim) if i != d.ndim - 2]
    return (d * w).sum(dim=dims), w.sum(dim=dims)


def mean_attention_distance(attn: torch.Tensor, dist: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean attention distance per head, (heads,).

    ``attn`` (…, heads, N, N): rows are distributions over keys; ``dist`` the (…, N, N) pixel
    distances between tokens, broadcastable to ``attn`` (e.g. :func:`patch_distances`);
    ``query_mask`` (…, N) selects the queries to average over (default all), e.g. no padding.
    """
    total, count = _distance_sums(attn, dist, query_mask)
    return total / count


def _strip_prefix(attn: torch.Tensor, p: int) -> torch.Tensor:
    """Drop the first ``p`` (non-spatial) tokens' rows and columns and renormalise each row."""
    if p == 0:
        return attn
    a = attn[..., p:, p:]
    return a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def attention_distance(
    model: nn.Module,
    batches: torch.Tensor | Iterable[torch.Tensor],
    layers: int | Sequence[int] | str = "all",
) -> list[torch.Tensor]:
    """Mean attention distance in input pixels per head for each chosen layer, over all images.

    ``batches`` is one (B, C, H, W) tensor or an iterable of them (already preprocessed). Returns
    one (heads,) tensor per chosen layer, in layer order. Maps are reduced as each layer runs, so
    memory is one layer's map for one batch.
    """
    was_training = model.training
    model.eval()
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    sums: dict[int, list[torch.Tensor]] = {}
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
    grid: dict[str, tuple[int, int]] = {}  # ViT: the patch grid of the batch being run

    def on_map(layer: AttentionLayer, attn: torch.Tensor, g: WindowGeometry | None) -> None:
        attn = attn.float()
        if g is None:  # ViT: (B, heads, 1+N, 1+N) over a grid of the current image size
            key = ("vit", grid["now"], layer.stride)
            if key not in cache:
                cache[key] = (patch_distances(grid["now"], layer.stride).to(attn.device), None)
            dist, mask = cache[key]
            attn = _strip_prefix(attn, layer.num_prefix_tokens)
        else:  # Swin: (B·nW, heads, N, N) → (B, nW, heads, N, N), distances per window
            key = (g, layer.stride)
            if key not in cache:
                coords, valid = window_token_coords(g, attn.device)
                xy = coords.double() * layer.stride
                cache[key] = (torch.cdist(xy, xy).float()[:, None], valid[:, None])  # (nW, 1, N, N), (nW, 1, N)
            dist, mask = cache[key]
            attn = attn.view(-1, g.num_windows, *attn.shape[1:])
        total, count = _distance_sums(attn, dist, mask)
        acc = sums.setdefault(layer.index, [torch.zeros_like(total), torch.zeros_like(count)])
        acc[0] += total
        acc[1] += count

    try:
        with capture_attention(model, layers, callback=on_map) as rec:
            for x in batches:
                if not rec.layers[0].windowed:
                    stride = rec.layers[0].stride
                    grid["now"] = (x.shape[-2] // stride, x.shape[-1] // stride)
                model(x)
            chosen = [layer.index for layer in rec.layers]
    finally:
        model.train(was_training)
    if not sums:
        raise ValueError("no images were given: batches was empty")
    return [(sums[i][0] / sums[i][1]).cpu() for i in chosen]

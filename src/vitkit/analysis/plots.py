"""PNG figures for the analyses, drawn as the ViT paper draws them (Fig. 6 and Fig. 7).

Uses matplotlib's object API (``Figure``), so no global backend or pyplot state is touched.
Images are passed in display range [0, 1], (B, C, H, W) with C = 1 or 3.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi)
    return path


def _hwc(img: torch.Tensor):
    """(C, H, W) in [0, 1] → numpy (H, W, 3) or (H, W) for imshow."""
    img = img.detach().float().clamp(0, 1).cpu()
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def upsample_map(attn_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(Gh, Gw) patch map → (H, W), bilinear, scaled to max 1. A map whose grid covers more than the
    image (Swin pads the input to a patch multiple) is cropped to the image."""
    m = attn_map.detach().float().cpu()
    m = m / m.max().clamp_min(1e-12)
    Gh, Gw = m.shape
    stride_h, stride_w = -(-size[0] // Gh), -(-size[1] // Gw)
    big = F.interpolate(m[None, None], size=(Gh * stride_h, Gw * stride_w), mode="bilinear", align_corners=False)
    return big[0, 0, : size[0], : size[1]].clamp(0, 1)


def plot_rollout(images: torch.Tensor, maps: torch.Tensor, path: str | Path, *, title: str = "Attention rollout",
                 labels: Sequence[str] | None = None) -> Path:
    """One row per image: the input, the rollout as a heat map over it, and the input × rollout
    (the paper's Fig. 6 style)."""
    B = images.shape[0]
    fig = _figure(6.6, 2.2 * B + 0.4)
    axes = fig.subplots(B, 3, squeeze=False)
    for b in range(B):
        img = _hwc(images[b])
        m = upsample_map(maps[b], images.shape[-2:])
        gray = img.ndim == 2
        axes[b, 0].imshow(img, cmap="gray" if gray else None, vmin=0, vmax=1)
        axes[b, 1].imshow(img, cmap="gray" if gray else None, vmin=0, vmax=1)
        axes[b, 1].imshow(m.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        masked = img * m.numpy() if gray else img * m.numpy()[..., None]
        axes[b, 2].imshow(masked, cmap="gray" if gray else None, vmin=0, vmax=1)
        for ax in axes[b]:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[b, 0].set_ylabel(labels[b] if labels else f"image {b}")
    for ax, name in zip(axes[0], ("input", "rollout (heat map)", "input × rollout")):
        ax.set_title(name, fontsize=10)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), ax=axes[:, 1:].ravel().tolist(), shrink=0.6,
                 label="rollout / max")
    fig.suptitle(title)
    return _save(fig, path)


def plot_attention_distance(distances: Sequence[torch.Tensor], path: str | Path, *, image_size: int | None = None,
                            stages: Sequence[int] | None = None, uniform: float | None = None,
                            title: str = "Mean attention distance") -> Path:
    """Fig. 7 right: network depth (layer) on x, mean attention distance in pixels on y, one dot
    per head, coloured by head index. ``stages`` (Swin: the stage of each layer) draws the stage
    boundaries; ``uniform`` draws the distance of uniform attention over all patches (the mean
    pairwise patch distance) as a dashed reference line."""
    from matplotlib import colormaps

    fig = _figure(5.0, 3.8)
    ax = fig.subplots()
    heads = max(len(d) for d in distances)
    cmap = colormaps["tab20" if heads > 10 else "tab10"]
    labelled: set[int] = set()
    for layer, d in enumerate(distances, start=1):
        for h, v in enumerate(d.tolist()):
            ax.scatter(layer, v, s=16, color=cmap(h % cmap.N), label=None if h in labelled else f"head {h + 1}")
            labelled.add(h)
    if uniform is not None:
        ax.axhline(uniform, color="gray", lw=1, ls="--", label=f"uniform attention ({uniform:.1f} px)")
    if stages is not None:
        for layer in range(1, len(stages)):
            if stages[layer] != stages[layer - 1]:
                ax.axvline(layer + 0.5, color="gray", lw=0.8, ls="--")
        for s in sorted(set(stages)):
            first = stages.index(s) + 1
            last = len(stages) - stages[::-1].index(s)
            ax.text((first + last) / 2, 0.98, f"stage {s + 1}", transform=ax.get_xaxis_transform(),
                    ha="center", va="top", fontsize=8, color="gray")
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(range(1, len(distances) + 1))
    ax.set_xlim(0.5, len(distances) + 0.5)
    ax.set_ylim(0, image_size if image_size else None)
    ax.grid(alpha=0.3)
    if heads <= 16:
        ax.legend(fontsize=7, ncol=2 if heads > 5 else 1, loc="lower right")
    ax.set_title(title)
    return _save(fig, path)


def plot_position_similarity(sim: torch.Tensor, path: str | Path, *, title: str = "Position embedding similarity") -> Path:
    """Fig. 7 centre: a Gh×Gw grid of tiles; tile (i, j) shows the cosine similarity of patch
    (i, j)'s position embedding with every patch's."""
    import numpy as np

    Gh, Gw = sim.shape[:2]
    gap = 1
    mosaic = np.full((Gh * (Gh + gap) - gap, Gw * (Gw + gap) - gap), np.nan)
    s = sim.detach().float().cpu().numpy()
    for i in range(Gh):
        for j in range(Gw):
            r, c = i * (Gh + gap), j * (Gw + gap)
            mosaic[r: r + Gh, c: c + Gw] = s[i, j]
    fig = _figure(5.6, 5.0)
    ax = fig.subplots()
    im = ax.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([j * (Gw + gap) + (Gw - 1) / 2 for j in range(Gw)], [str(j + 1) for j in range(Gw)], fontsize=7)
    ax.set_yticks([i * (Gh + gap) + (Gh - 1) / 2 for i in range(Gh)], [str(i + 1) for i in range(Gh)], fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    fig.colorbar(im, ax=ax, shrink=0.8, label="Cosine similarity")
    ax.set_title(title)
    return _save(fig, path)


def plot_embedding_filters(components: torch.Tensor, path: str | Path, *, explained: torch.Tensor | None = None,
                           cols: int = 7, title: str | None = None) -> Path:
    """Fig. 7 left: the principal components of the patch-embedding filters as image tiles, each
    scaled to its own [min, max] (RGB for 3-channel models, gray for 1-channel)."""
    n = components.shape[0]
    rows = -(-n // cols)
    fig = _figure(1.0 * cols + 0.4, 1.1 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.set_axis_off()
            continue
        c = components[k].detach().float().cpu()
        c = (c - c.min()) / (c.max() - c.min()).clamp_min(1e-12)
        img = _hwc(c)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        label = f"PC {k + 1}" + (f" ({100 * float(explained[k]):.0f}%)" if explained is not None else "")
        ax.set_title(label, fontsize=7)
    kind = "RGB" if components.shape[1] == 3 else f"{components.shape[1]}-channel"
    fig.suptitle(title or f"{kind} embedding filters (first {n} principal components)", fontsize=10)
    return _save(fig, path)

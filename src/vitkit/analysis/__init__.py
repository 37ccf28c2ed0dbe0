"""The ViT paper's analyses (§4.5, Fig. 6–7) for vitkit's ViT and Swin models.

- :func:`capture_attention`: maps of chosen layers while every other layer keeps fused attention.
- :func:`attention_rollout`, :func:`rollout_map`: attention rollout to the input patches.
- :func:`attention_distance`: mean attention distance per head and layer.
- :func:`position_embedding_similarity`, :func:`patch_embedding_components`: what the embeddings learn.
- :mod:`vitkit.analysis.plots`: the figures as PNG files.
"""
from .capture import (
    AttentionLayer,
    AttentionRecorder,
    WindowGeometry,
    apply_window_attention,
    attention_layers,
    capture_attention,
    window_attention_to_full,
    window_token_coords,
)
from .distance import attention_distance, mean_attention_distance, patch_distances
from .embeddings import patch_embedding_components, position_embedding_similarity
from .rollout import attention_rollout, fuse_heads, merge_rollout, rollout_map, rollout_step, swin_rollout

__all__ = [
    "AttentionLayer", "AttentionRecorder", "WindowGeometry", "apply_window_attention", "attention_layers",
    "capture_attention", "window_attention_to_full", "window_token_coords", "attention_distance",
    "mean_attention_distance", "patch_distances", "patch_embedding_components", "position_embedding_similarity",
    "attention_rollout", "fuse_heads", "merge_rollout", "rollout_map", "rollout_step", "swin_rollout",
]

"""Building blocks shared by the ViT and Swin models: one concept a file."""
from .attention import Attention, attention
from .drop_path import DropPath, drop_path
from .layer_scale import LayerScale
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .pos_embed import resample_abs_pos_embed

__all__ = [
    "Attention", "attention", "DropPath", "drop_path", "LayerScale", "Mlp", "PatchEmbed",
    "resample_abs_pos_embed",
]

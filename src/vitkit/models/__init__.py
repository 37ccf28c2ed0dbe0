"""Model architectures: one file each. Importing this package registers every variant."""
from . import swin, vit  # noqa: F401
from .swin import SwinTransformer
from .vit import VisionTransformer

__all__ = ["SwinTransformer", "VisionTransformer"]

"""Weight formats in and out: detection, key tables per source, the load pipeline, pretrained tags.
Building a model around weights is :mod:`vitkit.build` (above this package).

    report = vitkit.load_weights(model, "ViT-B_16.npz")   # any supported format, detected
    print(report)                                          # loaded / resampled / dropped / …
"""
from .formats import FORMAT_NAMES, detect_format
from .io import read_checkpoint, save_official_swin_pth, save_official_vit_npz, save_vitkit
from .load import LoadReport, Weights, load_converted, load_weights, read_weights
from .resample import resample_pos_embed

__all__ = [
    "FORMAT_NAMES", "LoadReport", "Weights", "detect_format", "load_converted", "load_weights", "read_checkpoint",
    "read_weights", "resample_pos_embed", "save_official_swin_pth", "save_official_vit_npz", "save_vitkit",
]

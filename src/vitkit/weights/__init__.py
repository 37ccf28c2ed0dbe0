"""Weight formats in and out: detection, key tables per source, resampling, pretrained tags."""
from .load import LoadReport, load_weights

__all__ = ["LoadReport", "load_weights"]

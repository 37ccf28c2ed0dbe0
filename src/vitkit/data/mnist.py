"""The MNIST sample shipped inside the package (the official 10,000-image test set).

It lets ``vitkit train`` run with no download and no arguments. The split is a fixed rule, not a
random draw: image i is held out when ``i % 5 == 4`` (2,000 images), the other 8,000 train. The
rule takes every fifth image, so both writer populations of the file (its first half, Census
employees; its second half, students) are in both splits.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources
from typing import Any, Callable

import numpy as np
import torch

from .images import ImageDataset, convert_tensor_mode

MNIST_CLASSES = [str(d) for d in range(10)]
HOLDOUT_EVERY = 5


def _read_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (the MNIST container): magic (2 zero bytes, dtype code, ndim), dims, data."""
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"IDX payload has {arr.size} bytes, header says {dims}")
    return arr.reshape(dims)


@lru_cache(maxsize=1)
def load_embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 images (uint8, (10000, 28, 28)) and labels (int64, (10000,))."""
    pkg = resources.files("vitkit") / "assets" / "mnist"
    images = _read_idx(gzip.decompress((pkg / "t10k-images-idx3-ubyte.gz").read_bytes()))
    labels = _read_idx(gzip.decompress((pkg / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    return images, labels.astype(np.int64)


class EmbeddedMNIST(ImageDataset):
    """``split`` "train" (8,000 images) or "val"/"test" (the 2,000 held out)."""

    def __init__(self, split: str = "train", transform: Callable[[Any], Any] | None = None, mode: str = "L") -> None:
        super().__init__(transform, mode)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split={split!r} is not valid for the embedded MNIST; choose 'train' or 'val'")
        images, labels = load_embedded_mnist()
        held = np.arange(len(labels)) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
        keep = ~held if split == "train" else held
        self.images = torch.from_numpy(np.ascontiguousarray(images[keep]))  # (N, 28, 28) uint8
        self.targets = labels[keep].tolist()
        self.indices = np.flatnonzero(keep).tolist()  # positions in the official file
        self.classes = list(MNIST_CLASSES)

    def load(self, i: int) -> torch.Tensor:
        return convert_tensor_mode(self.images[i].unsqueeze(0), self.mode)  # (C, 28, 28)

    def source(self, i: int) -> str:
        return f"mnist-t10k[{self.indices[i]}]"

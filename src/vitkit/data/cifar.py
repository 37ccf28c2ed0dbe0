"""CIFAR-10/100 in torchvision's on-disk format (``cifar-10-batches-py``, ``cifar-100-python``).

The pickled batches are read directly (no checksum of the archive, so a re-packed copy works too);
images are kept in memory as one uint8 array (50,000 × 32 × 32 × 3 = 150 MB for the train split).
The image-folder layout of CIFAR (``train/<class>/*.jpg``) goes through :class:`ImageFolder`.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .images import ImageDataset, convert_tensor_mode

# folder name → (train files, test files, meta file, label key, names key)
CIFAR_LAYOUTS = {
    "cifar-10-batches-py": ([f"data_batch_{k}" for k in range(1, 6)], ["test_batch"], "batches.meta",
                            "labels", "label_names"),
    "cifar-100-python": (["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def find_cifar_folder(root: str | Path) -> Path | None:
    """``root`` itself or its child when it is a torchvision CIFAR folder, else None."""
    root = Path(root)
    for name, (train, _, meta, _, _) in CIFAR_LAYOUTS.items():
        for cand in (root / name, root):
            if (cand / meta).is_file() and (cand / train[0]).is_file():
                return cand
    return None


def _layout(folder: Path) -> tuple:
    for name, layout in CIFAR_LAYOUTS.items():
        if (folder / layout[2]).is_file() and (folder / layout[0][0]).is_file():
            return layout
    raise FileNotFoundError(f"{str(folder)!r} is not a torchvision CIFAR folder (cifar-10-batches-py or cifar-100-python)")


def _unpickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


class CIFAR(ImageDataset):
    """CIFAR-10 or CIFAR-100 (decided by the folder) from torchvision's pickled batches."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable[[Any], Any] | None = None,
                 mode: str = "RGB") -> None:
        super().__init__(transform, mode)
        folder = find_cifar_folder(root)
        if folder is None:
            raise FileNotFoundError(f"no cifar-10-batches-py or cifar-100-python folder at {str(root)!r}")
        train_files, test_files, meta, label_key, names_key = _layout(folder)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split={split!r} is not valid for CIFAR; choose 'train' or 'test'")
        files = train_files if split == "train" else test_files
        data, labels = [], []
        for f in files:
            d = _unpickle(folder / f)
            data.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))  # (n, C, H, W)
            labels.extend(int(v) for v in d[label_key])
        self.images = torch.from_numpy(np.concatenate(data))
        self.targets = labels
        self.classes = list(_unpickle(folder / meta)[names_key])
        self.folder = folder
        self.split = split

    def load(self, i: int) -> torch.Tensor:
        return convert_tensor_mode(self.images[i], self.mode)  # (C, 32, 32) uint8

    def source(self, i: int) -> str:
        return f"{self.folder.name}/{self.split}[{i}]"

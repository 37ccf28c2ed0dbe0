"""CIFAR-10/100 in torchvision's on-disk format (``cifar-10-batches-py``, ``cifar-100-python``).

The pickled batches are read directly (no checksum of the archive, so a re-packed copy works too),
but never with Python's full unpickler: a pickle can name any function to call, so a crafted
``cifar-10-batches-py/`` inside a downloaded archive could run commands as the training user.
:func:`safe_unpickle` admits only what the batches consist of (dicts, lists, strings, bytes, numbers
and numpy's array reconstruction) and refuses anything else, naming the file and the object. Files
whose MD5 is one of the official files' (the table torchvision checks downloads against) are known
content; they too go through the restricted reader, with the full one only as a fallback.

Images are kept in memory as one uint8 array (50,000 × 32 × 32 × 3 = 150 MB for the train split).
The image-folder layout of CIFAR (``train/<class>/*.jpg``) goes through :class:`ImageFolder`.
"""
from __future__ import annotations

import hashlib
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


# md5 → file name of the official batches (Krizhevsky 2009, www.cs.toronto.edu/~kriz/cifar.html),
# as torchvision.datasets.CIFAR10/CIFAR100 list them
OFFICIAL_MD5 = {
    "c99cafc152244af753f735de768cd75f": "data_batch_1", "d4bba439e000b95fd0a9bffe97cbabec": "data_batch_2",
    "54ebc095f3ab1f0389bbae665268c751": "data_batch_3", "634d18415352ddfa80567beed471001a": "data_batch_4",
    "482c414d41f54cd18b22e5b47cb7c3cb": "data_batch_5", "40351d587109b95175f43aff81a1287e": "test_batch",
    "5ff9c542aee3614f3951f8cda6e48888": "batches.meta",
    "16019d7e3df5f24257cddd939b257f8d": "train", "f0ef6b0ae62326f3e7ffdfab6717acfc": "test",
    "7973b15100ade9c7d40fb424638fde48": "meta",
}

# the only callables a CIFAR batch needs: numpy's array (and dtype) reconstruction, and the codec
# Python 3 uses to pickle bytes at protocol 2; no function that touches files, processes or imports
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),  # protocols 2-4
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),  # protocol 5
    ("_codecs", "encode"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "bytearray"),
}


class UnsafePickleError(ValueError):
    """A pickle names a callable outside the CIFAR allow-list: it was not unpickled."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")  # Python 2 str (the official files) → str
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"{self.path} was refused: it asks to call {module}.{name} while unpickling, and a CIFAR batch "
                "holds only plain data (dicts, lists, strings, numbers and numpy arrays). It was not read, so "
                "nothing in it ran. Use the official files (torchvision.datasets.CIFAR10(root, download=True)), "
                "or the image-folder layout (train/<class>/*.png)")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # numpy 2 renamed it; same functions
        return super().find_class(module, name)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_unpickle(path: str | Path) -> Any:
    """Unpickle ``path`` admitting only plain data and numpy arrays (module docstring); raise
    :class:`UnsafePickleError` naming the file and the callable otherwise. A file with one of the
    official MD5s that the restricted reader refuses (an unforeseen pickling detail) is read fully."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except UnsafePickleError:
        if _md5(path) not in OFFICIAL_MD5:
            raise
    with open(path, "rb") as f:  # byte-identical to an official file: known content
        return pickle.load(f, encoding="latin1")


def _plain_keys(obj: Any) -> Any:
    """Bytes keys (a batch re-pickled with ``encoding="bytes"``) as str, so both spellings read alike."""
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        d = _plain_keys(safe_unpickle(path))
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or not a pickle at all
        raise ValueError(f"{path} is damaged or not a CIFAR batch ({type(e).__name__}: {e}); re-download or "
                         "re-extract the data set") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path} holds a {type(d).__name__}, not a CIFAR batch (a dict with data and labels)")
    return d


def _entry(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        raise ValueError(f"{path} has no {key!r} entry (it has {sorted(map(str, d))[:6]}); it is not a "
                         "torchvision-format CIFAR batch")
    return d[key]


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
            rows = np.asarray(_entry(d, "data", folder / f), dtype=np.uint8)
            data.append(rows.reshape(-1, 3, 32, 32))  # (n, C, H, W)
            labels.extend(int(v) for v in _entry(d, label_key, folder / f))
        self.images = torch.from_numpy(np.concatenate(data))
        self.targets = labels
        names = _entry(_unpickle(folder / meta), names_key, folder / meta)
        self.classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
        self.folder = folder
        self.split = split

    def load(self, i: int) -> torch.Tensor:
        return convert_tensor_mode(self.images[i], self.mode)  # (C, 32, 32) uint8

    def source(self, i: int) -> str:
        return f"{self.folder.name}/{self.split}[{i}]"

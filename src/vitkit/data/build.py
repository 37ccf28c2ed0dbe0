"""From a data spec (``mnist``, ``cifar10``, ``cifar100``, a folder or an archive) to a dataset.

    ds = build_dataset("cifar10", "train", transform)          # looks under data_root
    ds = build_dataset("/data/pets", "val", transform)          # pets/train/<class>, pets/val/<class>
    ds = build_dataset("/data/flowers", "val", t, val_fraction=0.1)  # no split folders: hold 10% out
    ds = build_dataset("cifar10-jpg.tar.gz", "train", t)        # unpacked once into the cache

Split rules: ``"train"``; ``"val"`` is the set's own held-out split (``val/``, else ``test/``;
CIFAR's test batches; the embedded MNIST's 2,000) unless ``val_fraction`` > 0, which carves the
validation split out of ``train`` (evenly spaced within each class, no random numbers); ``"test"``
is always the set's own held-out split.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .cifar import CIFAR, find_cifar_folder
from .folder import ImageFolder, find_classes
from .images import ImageDataset, SubsetView, holdout_indices
from .mnist import EmbeddedMNIST

log = logging.getLogger(__name__)

NAMED = ("mnist", "cifar10", "cifar100")
SPLITS = ("train", "val", "test")
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
_TV_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def default_data_root() -> Path:
    """Where named sets are looked for and downloaded: ``$VITKIT_DATA`` or ``~/.cache/vitkit/data``."""
    return Path(os.environ.get("VITKIT_DATA", Path.home() / ".cache" / "vitkit" / "data"))


def default_cache_dir() -> Path:
    """Where archives are unpacked: ``$VITKIT_CACHE`` or ``~/.cache/vitkit/extracted``."""
    return Path(os.environ.get("VITKIT_CACHE", Path.home() / ".cache" / "vitkit" / "extracted"))


@dataclass(frozen=True)
class DataSource:
    """A resolved spec: ``kind`` is "mnist", "cifar" (torchvision pickles), "split-folder"
    (``train/`` + ``val/``|``test/``) or "folder" (classes directly under ``root``)."""

    kind: str
    root: Path | None = None


def _is_archive(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(ARCHIVES)


def extract_archive(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Unpack a .tar/.tar.gz/.zip once into the cache and return the folder (atomic: unpacked into a
    temporary folder, renamed when complete; a later call finds it by path, size and mtime)."""
    path = Path(path)
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]
    stem = path.name.split(".")[0]
    dest = Path(cache_dir or default_cache_dir()) / f"{stem}-{key}"
    if (dest / ".complete").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("unpacking %s into %s (once)", path, dest)
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
    else:
        with tarfile.open(path) as tf:
            tf.extractall(tmp, filter="data")
    (tmp / ".complete").touch()
    try:
        os.replace(tmp, dest)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / ".complete").is_file():
            raise
    return dest


def _classify_folder(root: Path) -> DataSource:
    if find_cifar_folder(root) is not None:
        return DataSource("cifar", find_cifar_folder(root))
    if (root / "train").is_dir():
        return DataSource("split-folder", root)
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(subdirs) == 1 and ((subdirs[0] / "train").is_dir() or find_cifar_folder(subdirs[0])):
        return _classify_folder(subdirs[0])  # an archive with one top-level folder
    return DataSource("folder", root)


def resolve_data(spec: str | Path, *, data_root: str | Path | None = None, download: bool = False,
                 cache_dir: str | Path | None = None) -> DataSource:
    """Find the data behind ``spec``; unpack archives; download CIFAR only when ``download``."""
    name = str(spec)
    if name == "mnist":
        return DataSource("mnist")
    if name in ("cifar10", "cifar100"):
        root = Path(data_root or default_data_root())
        for cand in (root / _TV_FOLDER[name], root / name):
            if cand.is_dir():
                return _classify_folder(cand)
        archives = sorted(p for p in root.glob(f"{name}*") if _is_archive(p)) if root.is_dir() else []
        if archives:
            return _classify_folder(extract_archive(archives[0], cache_dir))
        if download:
            import torchvision

            cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
            cls(str(root), train=True, download=True)
            return DataSource("cifar", root / _TV_FOLDER[name])
        raise FileNotFoundError(
            f"{name} was not found under data_root={str(root)!r} (looked for {_TV_FOLDER[name]}/, {name}/ and "
            f"{name}*.tar.gz). Pass --data PATH (a torchvision CIFAR folder, an image-folder tree or an archive of "
            f"one), set data_root=DIR, or set data_download=true to fetch it with torchvision.")
    path = Path(name).expanduser()
    if _is_archive(path):
        return _classify_folder(extract_archive(path, cache_dir))
    if path.is_dir():
        return _classify_folder(path)
    raise FileNotFoundError(
        f"data {name!r} is neither one of {NAMED} nor an existing folder or archive ({', '.join(ARCHIVES)})")


def build_dataset(
    spec: str | Path | DataSource,
    split: str = "train",
    transform: Callable[[Any], Any] | None = None,
    *,
    mode: str = "RGB",
    val_fraction: float = 0.0,
    data_root: str | Path | None = None,
    download: bool = False,
) -> ImageDataset:
    """The ``split`` of the data named by ``spec`` (see the module docstring for the rules).

    ``mode`` is the colour mode the model wants ("RGB" for 3 channels, "L" for 1); images of any
    other mode are converted. Returns an :class:`ImageDataset` (``classes``, ``targets``, ``load``).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; choose one of {SPLITS}")
    src = spec if isinstance(spec, DataSource) else resolve_data(spec, data_root=data_root, download=download)
    carve = val_fraction > 0 and split in ("train", "val")
    if split == "val" and val_fraction == 0 and src.kind == "folder":
        raise ValueError(f"{str(src.root)!r} has no val/ or test/ folder; set val_fraction=0.1 (for example) "
                         "to hold out that fraction of each class for validation")
    own = "train" if carve else split
    if src.kind == "mnist":
        ds: ImageDataset = EmbeddedMNIST(own, None if carve else transform, mode)
    elif src.kind == "cifar":
        ds = CIFAR(src.root, own, None if carve else transform, mode)
    elif src.kind == "split-folder":
        train_classes = None
        folder = src.root / "train"
        if own != "train":
            train_classes = find_classes(folder) if folder.is_dir() else None  # the label order, without a walk
            other = "test" if own == "val" else "val"
            found = [src.root / n for n in (own, other) if (src.root / n).is_dir()]
            if not found:
                raise FileNotFoundError(f"{str(src.root)!r} has train/ but no val/ or test/ folder; set "
                                        "val_fraction=0.1 (for example) to carve validation out of train/")
            folder = found[0]
        ds = ImageFolder(folder, None if carve else transform, mode, classes=train_classes)
    else:
        if split == "test":
            raise ValueError(f"{str(src.root)!r} has no test/ folder (classes sit directly under it)")
        ds = ImageFolder(src.root, None if carve else transform, mode)
    if carve:
        kept, held = holdout_indices(ds.targets, val_fraction)
        ds = SubsetView(ds, kept if split == "train" else held, transform)
    return ds

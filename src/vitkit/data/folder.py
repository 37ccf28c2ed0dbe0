"""Image folders: one sub-folder per class, any common image format, any colour mode."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from .images import IMAGE_EXTENSIONS, ImageDataset, load_image

log = logging.getLogger(__name__)


def find_classes(root: str | Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(
            f"{str(root)!r} has no class sub-folders; expected ROOT/<class name>/<image files> "
            "(or ROOT/train/<class>/… and ROOT/val/<class>/…)")
    return classes


class ImageFolder(ImageDataset):
    """``root/<class>/**/<image>`` with classes sorted by name and files sorted by path.

    Files are listed by extension only (listing stays fast on large sets); a file that turns out to
    be unreadable, truncated or not an image is skipped at load time and counted by the loop.
    ``classes`` may be given to fix the label order (e.g. the val split uses the train split's).
    """

    def __init__(self, root: str | Path, transform: Callable[[Any], Any] | None = None, mode: str = "RGB",
                 classes: list[str] | None = None) -> None:
        super().__init__(transform, mode)
        self.root = Path(root)
        found = find_classes(self.root)
        self.classes = list(classes) if classes is not None else found
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise ValueError(f"{str(self.root)!r} has class folders {unknown} that the training split lacks")
        self.samples: list[str] = []
        self.targets = []
        for label, name in enumerate(self.classes):
            folder = self.root / name
            if not folder.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                        self.samples.append(os.path.join(dirpath, f))
                        self.targets.append(label)
        if not self.samples:
            raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(self.root)!r}")
        seen = set(self.targets)
        empty = [name for label, name in enumerate(self.classes) if label not in seen]
        if empty:  # still classes (the label order must not shift), but never seen here: say so
            given = classes is not None
            log.warning(
                "%s: %d class%s with no image file%s: %s. %s", self.root, len(empty), "es" if len(empty) > 1 else "",
                " in this split" if given else "", ", ".join(empty[:10]) + (" …" if len(empty) > 10 else ""),
                "Their accuracy cannot be measured on this split" if given else
                "They stay classes the model never sees (their outputs are only pushed down); remove those "
                "folders if they are not classes, or add their images")

    def load(self, i: int) -> Any:
        return load_image(self.samples[i], self.mode)

    def source(self, i: int) -> str:
        return self.samples[i]

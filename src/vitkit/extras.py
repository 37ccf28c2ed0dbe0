"""Optional dependencies: each is imported where it is used, through :func:`require`, and a missing
one raises :class:`MissingDependency` naming the pip extra that installs it (one line on the
command line, no traceback). The extras are declared in ``pyproject.toml``; :data:`EXTRAS` mirrors
them (a test checks the two agree).

This module imports nothing heavy: the command line asks it before starting work, so that
``vitkit detect train`` stops at once, not after training, when pycocotools is missing.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# importable module -> (pip distribution, vitkit extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "pycocotools": ("pycocotools", "dense"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "yaml": ("pyyaml", "yaml"),
    "wandb": ("wandb", "wandb"),
    "timm": ("timm", "bench"),
    "transformers": ("transformers", "bench"),
}


class MissingDependency(ImportError):
    """An optional package is not installed; the message says how to install it."""


def install_hint(module: str) -> str:
    dist, extra = EXTRAS.get(module.split(".")[0], (module.split(".")[0], ""))
    hint = f"pip install 'vitkit[{extra}]'" if extra else f"pip install {dist}"
    return f"{hint} (or pip install {dist})" if extra else hint


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or a :class:`MissingDependency` saying that ``purpose`` needs it and how to
    install it (``require("pycocotools.coco", "COCO box/mask AP")``)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        if e.name not in (None, top, module) and not str(e.name).startswith(top + "."):
            raise  # the package is there but one of its own dependencies failed: show that error
        raise MissingDependency(f"{purpose} needs the {top} package, which is not installed: "
                                f"{install_hint(top)}") from e


def check(module: str, purpose: str) -> None:
    """Fail now, without importing it, if ``module`` is not installed (:func:`require`'s message)."""
    top = module.split(".")[0]
    try:
        import sys

        missing = top in sys.modules and sys.modules[top] is None  # blocked (tests simulate a missing package)
        missing = missing or importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        missing = True
    if missing:
        raise MissingDependency(f"{purpose} needs the {top} package, which is not installed: {install_hint(top)}")

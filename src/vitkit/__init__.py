"""vitkit: Vision Transformers (ViT, hybrid ViT, Swin) for PyTorch.

    import vitkit
    model = vitkit.create_model("vit_base_patch16_224", num_classes=10)
    report = vitkit.load_weights(model, "ViT-B_16.npz")

The public names are imported on first use (PEP 562 module ``__getattr__``): ``import vitkit`` and
the ``vitkit`` command's start-up (``vitkit --help``) do not import torch; the first
``vitkit.create_model`` does.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["create_model", "fast_paths", "list_models", "load_weights", "push_to_hub", "save_pretrained",
           "__version__"]

# public name -> the module that defines it
_LAZY = {"create_model": "build", "list_models": "build", "load_weights": "weights",
         "fast_paths": "layers.fastpath", "push_to_hub": "weights.hub_export",
         "save_pretrained": "weights.hub_export"}
_SUBMODULES = ("analysis", "benchmark", "build", "cli", "data", "dense", "evaluate", "layers", "models",
               "registry", "train", "weights")

if TYPE_CHECKING:  # for type checkers and IDEs: the names as they resolve
    from .build import create_model, list_models
    from .layers.fastpath import fast_paths
    from .weights import load_weights
    from .weights.hub_export import push_to_hub, save_pretrained


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        importlib.import_module(".build", __name__)  # the architectures (registering their rows) and the weights
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBMODULES:  # ``import vitkit; vitkit.train.…`` as before, when everything was imported eagerly
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'vitkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))

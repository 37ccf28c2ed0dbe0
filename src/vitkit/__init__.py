"""vitkit: Vision Transformers (ViT, hybrid ViT, Swin) for PyTorch.

    import vitkit
    model = vitkit.create_model("vit_base_patch16_224", num_classes=10)
    report = vitkit.load_weights(model, "ViT-B_16.npz")
"""
from .build import create_model, list_models  # imports the architectures (registering their rows) and the weights
from .layers.fastpath import fast_paths
from .weights import load_weights
from .weights.hub_export import push_to_hub, save_pretrained

__version__ = "0.1.0"
__all__ = ["create_model", "fast_paths", "list_models", "load_weights", "push_to_hub", "save_pretrained", "__version__"]

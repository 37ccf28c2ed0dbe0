"""Datasets (image folders, CIFAR, the embedded MNIST), transform presets and a resumable sampler."""
from .build import DataSource, build_dataset, default_cache_dir, default_data_root, extract_archive, resolve_data
from .cifar import CIFAR
from .folder import ImageFolder
from .images import ImageDataset, Skipped, SubsetView, collate, convert_mode, holdout_indices, load_image
from .mnist import EmbeddedMNIST
from .sampler import ShardedSampler, mix_seed
from .transforms import MixupCutmix, eval_transform, train_transform

__all__ = [
    "CIFAR", "DataSource", "EmbeddedMNIST", "ImageDataset", "ImageFolder", "MixupCutmix", "ShardedSampler",
    "Skipped", "SubsetView", "build_dataset", "collate", "convert_mode", "default_cache_dir",
    "default_data_root", "eval_transform", "extract_archive", "holdout_indices", "load_image", "mix_seed",
    "resolve_data", "train_transform",
]

"""Datasets that return raw uint8 images, the multi-crop augmentation and the seeded sampler."""

from dino_mx.data.build import ConvertChannels, build_dataset, resolve_data_path
from dino_mx.data.imagefolder import ImageFolderDataset
from dino_mx.data.multicrop import MultiCrop, build_multicrop
from dino_mx.data.npz import (
    NpzImageDataset,
    bundled_pneumoniamnist_path,
    medmnist_info,
    medmnist_path,
)
from dino_mx.data.sampler import InfiniteSampler, SeededAugment

__all__ = [
    "ConvertChannels",
    "ImageFolderDataset",
    "InfiniteSampler",
    "MultiCrop",
    "NpzImageDataset",
    "SeededAugment",
    "build_dataset",
    "build_multicrop",
    "bundled_pneumoniamnist_path",
    "medmnist_info",
    "medmnist_path",
    "resolve_data_path",
]

"""Datasets that return raw uint8 images (some with regions of interest), the multi-crop (per
sample or batched) and label-guided augmentations, block masks for masked-image modelling, the
seeded sampler, and the MedMNIST downloader and ``.npz`` summary behind ``dino-mx data``."""

from dino_mx.data.batch_multicrop import BatchMultiCrop, RawImage, build_batch_multicrop
from dino_mx.data.build import (
    ConvertChannels,
    build_augment,
    build_batch_augment,
    build_dataset,
    resolve_data_path,
)
from dino_mx.data.coco import load_coco
from dino_mx.data.crop_recipe import CropRecipe
from dino_mx.data.download import DownloadError, download_file, download_medmnist
from dino_mx.data.imagefolder import ImageFolderDataset
from dino_mx.data.label_guided import LabelGuidedCrop, build_label_guided, roi_crop_box
from dino_mx.data.masking import BlockMaskGenerator, MaskedCrops
from dino_mx.data.medmnist import (
    MedmnistFile,
    bundled_pneumoniamnist_path,
    medmnist_file,
    medmnist_info,
    medmnist_path,
)
from dino_mx.data.multicrop import MultiCrop, build_multicrop
from dino_mx.data.npz import NpzImageDataset
from dino_mx.data.roi import Regions, RoiDataset, load_roi_npz
from dino_mx.data.sampler import InfiniteSampler, SeededAugment
from dino_mx.data.summary import describe_npz
from dino_mx.data.tasks import TASKS

__all__ = [
    "BatchMultiCrop",
    "BlockMaskGenerator",
    "ConvertChannels",
    "CropRecipe",
    "DownloadError",
    "ImageFolderDataset",
    "InfiniteSampler",
    "LabelGuidedCrop",
    "MaskedCrops",
    "MedmnistFile",
    "MultiCrop",
    "NpzImageDataset",
    "RawImage",
    "Regions",
    "RoiDataset",
    "SeededAugment",
    "TASKS",
    "build_augment",
    "build_batch_augment",
    "build_batch_multicrop",
    "build_dataset",
    "build_label_guided",
    "build_multicrop",
    "bundled_pneumoniamnist_path",
    "describe_npz",
    "download_file",
    "download_medmnist",
    "load_coco",
    "load_roi_npz",
    "medmnist_file",
    "medmnist_info",
    "medmnist_path",
    "resolve_data_path",
    "roi_crop_box",
]

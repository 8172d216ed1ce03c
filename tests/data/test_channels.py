"""Any channel count: conversions with a rule, errors without one, 4-channel files and crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dino_mx.data import (
    ConvertChannels,
    CropRecipe,
    LabelGuidedCrop,
    MultiCrop,
    NpzImageDataset,
    Regions,
    build_augment,
    build_dataset,
)
from dino_mx.data.channels import per_channel
from dino_mx.eval.features import PixelBackbone, eval_dataset
from tests.conftest import make_config


def write_medmnist_layout(path: Path, images: dict[str, np.ndarray]) -> Path:
    """An ``.npz`` as MedMNIST writes it: uint8 NHWC images and uint8 (N, 1) labels."""
    arrays = {}
    for split, x in images.items():
        arrays[f"{split}_images"] = x
        arrays[f"{split}_labels"] = (np.arange(len(x)) % 2).astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    return path


def four_channel_file(tmp_path: Path) -> Path:
    # Image i of every split: channel c is the constant 10 * i + 50 * c.
    x = np.stack([np.full((6, 6, 4), [10 * i + 50 * c for c in range(4)]) for i in range(4)])
    x = x.astype(np.uint8)
    return write_medmnist_layout(tmp_path / "four.npz", {"train": x, "val": x, "test": x})


def data_overrides(path: Path, *extra: str) -> list[str]:
    return [
        "data=bloodcells",  # format npz: data.root / data.file
        "data.name=four",
        f"data.root={path.parent}",
        f"data.file={path.name}",
        "data.mean=[0.5]",
        "data.std=[0.5]",
        *extra,
    ]


def test_grey_repeats_rgb_takes_luma_and_other_conversions_fail_naming_the_key():
    grey = torch.tensor([[[0, 7], [128, 255]]], dtype=torch.uint8)  # (1, 2, 2)
    assert torch.equal(ConvertChannels(4)(grey), grey.expand(4, 2, 2))
    rgb = torch.tensor([100, 200, 50], dtype=torch.uint8).view(3, 1, 1)
    # 0.299 * 100 + 0.587 * 200 + 0.114 * 50 = 153.0
    assert ConvertChannels(1)(rgb).item() == 153
    four = torch.zeros(4, 2, 2, dtype=torch.uint8)
    assert ConvertChannels(4)(four) is four
    with pytest.raises(ValueError, match="data.channels=3 but the images have 4 channels"):
        ConvertChannels(3)(four)
    with pytest.raises(ValueError, match="data.channels=4 but the images have 3 channels"):
        ConvertChannels(4, source=3)
    with pytest.raises(ValueError, match="data.channels must be an integer >= 1"):
        ConvertChannels(0)


def test_mean_and_std_are_broadcast_or_per_channel():
    assert per_channel([0.5], [0.25], 4) == ([0.5] * 4, [0.25] * 4)
    assert per_channel([1, 2, 3, 4], [0.5], 4) == ([1.0, 2.0, 3.0, 4.0], [0.5] * 4)
    with pytest.raises(ValueError, match=r"data.mean has 3 values .* for 4-channel .* or 4"):
        per_channel([0.1, 0.2, 0.3], [0.5], 4)


def test_four_channel_npz_loads_with_its_channels(tmp_path):
    dataset = NpzImageDataset(four_channel_file(tmp_path), "train")
    assert dataset.channels == 4 and len(dataset) == 4
    image, label = dataset[3]
    assert image.shape == (4, 6, 6) and label == 1
    assert image[:, 0, 0].tolist() == [30, 80, 130, 180]


def test_data_config_keys_are_checked_against_the_four_channels(tmp_path):
    path = four_channel_file(tmp_path)
    cfg = make_config(*data_overrides(path))
    dataset = build_dataset(cfg.data, "train")
    assert dataset.channels == 4
    with pytest.raises(ValueError, match="data.channels=3 but the images have 4 channels"):
        build_dataset(make_config(*data_overrides(path, "data.channels=3")).data, "train")
    with pytest.raises(ValueError, match="data.channels must be an integer >= 1"):
        build_dataset(make_config(*data_overrides(path, "data.channels=0")).data, "train")
    bad = make_config(*data_overrides(path, "data.mean=[0.1,0.2,0.3]", "data.std=[0.5]"))
    with pytest.raises(ValueError, match=r"data.mean has 3 values .* for 4-channel images"):
        build_augment(bad.augment, dataset, bad.data.mean, bad.data.std)
    # Grey data asked for as 4 channels: repeated.
    grey = np.arange(2 * 6 * 6).reshape(2, 6, 6).astype(np.uint8)
    grey_file = write_medmnist_layout(tmp_path / "grey.npz", {"train": grey})
    grey_set = build_dataset(make_config(*data_overrides(grey_file, "data.channels=4")).data)
    assert grey_set.channels == 4
    assert torch.equal(grey_set[1][0], torch.from_numpy(grey[1]).expand(4, 6, 6))


def test_evaluation_normalises_four_channels_and_the_pixel_baseline_sees_them(tmp_path):
    path = four_channel_file(tmp_path)
    cfg = make_config(*data_overrides(path, "data.mean=[0,0.5,0,0.5]", "data.std=[1,1,0.5,0.5]"))
    dataset = eval_dataset(cfg.data, "test", size=6)
    image, _ = dataset[1]  # channels 10, 60, 110, 160
    values = torch.tensor([10.0, 60.0, 110.0, 160.0]) / 255
    expected = (values - torch.tensor([0, 0.5, 0, 0.5])) / torch.tensor([1, 1, 0.5, 0.5])
    torch.testing.assert_close(image[:, 0, 0], expected)
    cls, patches = PixelBackbone()(image[None])
    assert cls.shape == (1, 4 * 6 * 6) and patches.shape == (1, 1, 4 * 6 * 6)


def test_label_guided_crops_work_on_four_channels():
    still = dict(hflip=0.0, color_jitter=0.0, blur=(0, 0, 0), solarize=0.0)
    multicrop = MultiCrop(
        4, [0.0], [1.0], CropRecipe(global_size=16, local_size=8, n_local=1, **still)
    )
    crop = LabelGuidedCrop(multicrop, 8, roi_crops=2, roi_prob=1.0, roi_jitter=0.0)
    image = torch.zeros(4, 32, 32, dtype=torch.uint8)
    square = torch.tensor([40, 80, 120, 160], dtype=torch.uint8).view(4, 1, 1)
    image[:, 8:16, 8:16] = square
    regions = Regions(torch.tensor([[8.0, 8.0, 16.0, 16.0]]), torch.tensor([0]))
    torch.manual_seed(0)
    views = crop(image, regions)
    assert [tuple(v.shape) for v in views] == [(4, 16, 16)] * 2 + [(4, 8, 8)] * 3
    # A centred ROI crop holds the whole square (side 1-1.5x the square's): its centre pixel
    # has the square's four values.
    for roi in views[-2:]:
        torch.testing.assert_close(roi[:, 4, 4], square.view(4).float() / 255)

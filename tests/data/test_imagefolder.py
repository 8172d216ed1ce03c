"""ImageFolderDataset on tiny folders of PNG/JPEG/TIFF images in many PIL modes, and
multi-channel TIFFs written by tifffile."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torchvision import tv_tensors

from dino_mx.data import ImageFolderDataset

RGB = np.array([[[10, 20, 30], [200, 100, 0]], [[255, 0, 128], [1, 2, 3]]], dtype=np.uint8)
GRAY = np.array([[0, 17], [128, 255]], dtype=np.uint8)
# 16-bit values chosen so value / 257 is exact: 0, 1, 100, 255
GRAY16 = np.array([[0, 257], [25700, 65535]], dtype=np.uint16)


def _save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _single(tmp_path: Path, name: str, image: Image.Image) -> Path:
    _save(tmp_path / "only" / name, image)
    return tmp_path


def test_rgb_png_exact(tmp_path: Path) -> None:
    ds = ImageFolderDataset(_single(tmp_path, "a.png", Image.fromarray(RGB)))
    assert (ds.channels, ds.num_classes, ds.image_size, ds.multilabel) == (3, 1, None, False)
    image, label = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
    assert image.shape == (3, 2, 2) and label == 0
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), RGB)


def test_rgba_drops_alpha_keeps_colour(tmp_path: Path) -> None:
    rgba = np.concatenate([RGB, np.full((2, 2, 1), 40, np.uint8)], axis=2)
    ds = ImageFolderDataset(_single(tmp_path, "a.PNG", Image.fromarray(rgba, "RGBA")))
    assert ds.channels == 3
    np.testing.assert_array_equal(ds[0][0].permute(1, 2, 0).numpy(), RGB)


def test_gray_png_one_channel_and_replicated(tmp_path: Path) -> None:
    root = _single(tmp_path, "g.png", Image.fromarray(GRAY, "L"))
    ds = ImageFolderDataset(root)
    assert ds.channels == 1 and ds[0][0].shape == (1, 2, 2)
    np.testing.assert_array_equal(ds[0][0][0].numpy(), GRAY)
    rgb = ImageFolderDataset(root, channels=3)[0][0]
    assert rgb.shape == (3, 2, 2)
    for c in range(3):
        np.testing.assert_array_equal(rgb[c].numpy(), GRAY)


def test_rgb_to_gray_uses_luma(tmp_path: Path) -> None:
    ds = ImageFolderDataset(_single(tmp_path, "c.png", Image.fromarray(RGB)), channels=1)
    gray = ds[0][0][0].numpy().astype(int)
    # ITU-R 601-2 luma: L = 0.299 R + 0.587 G + 0.114 B
    expected = RGB.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray - expected).max() <= 1


@pytest.mark.parametrize("name", ["x.tif", "x.TIFF", "x.png"])
def test_16bit_scaled_not_clipped(tmp_path: Path, name: str) -> None:
    root = _single(tmp_path, name, Image.fromarray(GRAY16))
    assert Image.open(next(root.rglob(name))).mode == "I;16"
    ds = ImageFolderDataset(root)
    assert ds.channels == 1
    np.testing.assert_array_equal(ds[0][0][0].numpy(), [[0, 1], [100, 255]])
    rgb = ImageFolderDataset(root, channels=3)[0][0]
    np.testing.assert_array_equal(rgb.numpy(), np.broadcast_to([[0, 1], [100, 255]], (3, 2, 2)))


def test_12bit_minmax_stretch(tmp_path: Path) -> None:
    data = np.array([[100, 100 + 4095 // 3], [100 + 4095 // 2, 4195]], dtype=np.uint16)
    root = _single(tmp_path, "x.tif", Image.fromarray(data))
    out = ImageFolderDataset(root, scale_16bit="minmax")[0][0][0].numpy()
    np.testing.assert_array_equal(out, np.rint((data - 100) * 255.0 / 4095).astype(np.uint8))
    assert out.min() == 0 and out.max() == 255


def test_other_modes(tmp_path: Path) -> None:
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    _save(tmp_path / "p" / "pal.png", palette)
    _save(tmp_path / "q" / "bits.png", Image.fromarray(np.array([[True, False]] * 2)))
    _save(tmp_path / "r" / "photo.jpg", Image.new("CMYK", (2, 2), (0, 255, 255, 0)))
    ds = ImageFolderDataset(tmp_path, channels=3)
    pal, bits, cmyk = (ds[i][0].permute(1, 2, 0).numpy() for i in range(3))
    np.testing.assert_array_equal(pal[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(pal[0, 1], [0, 0, 255])
    np.testing.assert_array_equal(bits[:, :, 0], [[255, 0], [255, 0]])
    assert cmyk[0, 0, 0] > 200 and cmyk[0, 0, 1:].max() < 50  # cyan-free, magenta+yellow = red


def test_classes_sorted_and_transform(tmp_path: Path) -> None:
    for cls, value in (("zebra", 3), ("apple", 1), ("Mango", 2)):
        _save(tmp_path / cls / "img.jpeg", Image.new("L", (3, 3), value * 50))
    (tmp_path / "apple" / "notes.txt").write_text("not an image")  # skipped: extension
    ds = ImageFolderDataset(tmp_path, transform=lambda x: x.float() / 50)
    assert ds.classes == ["Mango", "apple", "zebra"]  # sorted by name (uppercase first)
    assert ds.labels.tolist() == [0, 1, 2] and ds.num_classes == 3 and len(ds) == 3
    values = [round(ds[i][0].mean().item()) for i in range(3)]
    assert values == [2, 1, 3]


def test_corrupt_file_error_names_path(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "good.png", Image.fromarray(GRAY, "L"))
    bad = tmp_path / "a" / "zz_bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    ds = ImageFolderDataset(tmp_path)
    assert ds[0][0].shape == (1, 2, 2)
    with pytest.raises(OSError, match="zz_bad.png") as info:
        ds[1]
    assert str(bad) in str(info.value)


def test_truncated_jpeg_error_names_path(tmp_path: Path) -> None:
    path = _save(tmp_path / "a" / "t.jpg", Image.fromarray(np.full((64, 64, 3), 9, np.uint8)))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(OSError, match=re.escape(str(path))):
        ImageFolderDataset(tmp_path)[0]


def test_bad_channels(tmp_path: Path) -> None:
    root = _single(tmp_path, "a.png", Image.fromarray(RGB))
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        ImageFolderDataset(root, channels=0)
    # RGB -> 2 channels has no rule: the error names the file and the rules there are.
    with pytest.raises(ValueError, match=r"a\.png: data.channels=2 but the images have 3 channels"):
        ImageFolderDataset(root, channels=2)[0]


def test_grey_png_repeated_into_any_channel_count(tmp_path: Path) -> None:
    image = ImageFolderDataset(_single(tmp_path, "a.png", Image.fromarray(GRAY)), channels=5)[0][0]
    assert image.shape == (5, 2, 2)
    np.testing.assert_array_equal(image.numpy(), np.broadcast_to(GRAY, (5, 2, 2)))


# Four channels of distinct 16-bit values: channel c holds 257 * (10 * c + [[0, 1], [2, 3]]),
# so "range" scaling (/ 257) gives exactly 10 * c + [[0, 1], [2, 3]].
FOUR = np.stack([10 * c + np.array([[0, 1], [2, 3]]) for c in range(4)])  # (4, 2, 2)


def test_multipage_tiff_is_one_channel_per_page(tmp_path: Path) -> None:
    path = tmp_path / "cls" / "stack.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, (FOUR * 257).astype(np.uint16), photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 4  # really four pages, as microscopes write them
    ds = ImageFolderDataset(tmp_path)
    assert ds.channels == 4
    image = ds[0][0]
    assert image.dtype == torch.uint8
    np.testing.assert_array_equal(image.numpy(), FOUR)


def test_hwc_tiff_with_four_samples_is_four_channels(tmp_path: Path) -> None:
    path = tmp_path / "cls" / "multi.tiff"
    path.parent.mkdir()
    data = FOUR.transpose(1, 2, 0).astype(np.uint8)  # (H, W, 4)
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1 and tif.pages[0].samplesperpixel == 4
    ds = ImageFolderDataset(tmp_path)
    assert ds.channels == 4
    np.testing.assert_array_equal(ds[0][0].numpy(), FOUR)
    with pytest.raises(ValueError, match="multi.tiff: data.channels=1 but the images have 4"):
        ImageFolderDataset(tmp_path, channels=1)[0]


def test_multichannel_tiff_minmax_stretches_each_channel(tmp_path: Path) -> None:
    path = tmp_path / "cls" / "s.tif"
    path.parent.mkdir()
    # 12-bit data: channel 0 spans 100..4195, channel 1 only 0..30 (a dim marker).
    data = np.array([[[100, 1123], [2147, 4195]], [[0, 10], [20, 30]]], dtype=np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack")
    out = ImageFolderDataset(tmp_path, scale_16bit="minmax")[0][0].numpy()
    np.testing.assert_array_equal(out[0], np.rint((data[0] - 100) * 255.0 / 4095))
    np.testing.assert_array_equal(out[1], [[0, 85], [170, 255]])


def test_rgba_tiff_stays_colour(tmp_path: Path) -> None:
    path = tmp_path / "cls" / "photo.tif"
    path.parent.mkdir()
    rgba = np.concatenate([RGB, np.full((2, 2, 1), 7, np.uint8)], axis=2)
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    ds = ImageFolderDataset(tmp_path)
    assert ds.channels == 3
    np.testing.assert_array_equal(ds[0][0].permute(1, 2, 0).numpy(), RGB)

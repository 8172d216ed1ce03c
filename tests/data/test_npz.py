"""NpzImageDataset and the MedMNIST file helpers, on small synthetic MedMNIST-layout files."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from dino_mx.data import (
    NpzImageDataset,
    bundled_pneumoniamnist_path,
    medmnist_file,
    medmnist_info,
    medmnist_path,
)


def _write(path: Path, images: np.ndarray, labels: np.ndarray, compressed: bool = False) -> Path:
    save = np.savez_compressed if compressed else np.savez
    rng = np.random.default_rng(1)
    val_images = rng.integers(0, 256, (2, *images.shape[1:]), dtype=np.uint8)
    save(
        path,
        train_images=images,
        train_labels=labels,
        val_images=val_images,
        val_labels=labels[:2],
    )
    return path


@pytest.fixture
def gray(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 7, 7), dtype=np.uint8)
    labels = np.array([[0], [2], [1], [2], [0]], dtype=np.int64)
    return _write(tmp_path / "gray.npz", images, labels), images, labels


def test_gray_values_and_labels_exact(gray: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, images, labels = gray
    ds = NpzImageDataset(path, "train")
    assert (len(ds), ds.channels, ds.image_size, ds.num_classes) == (5, 1, 7, 3)
    assert not ds.multilabel
    np.testing.assert_array_equal(ds.labels, [0, 2, 1, 2, 0])
    for i in range(5):
        image, label = ds[i]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
        assert image.shape == (1, 7, 7)
        np.testing.assert_array_equal(image[0].numpy(), images[i])
        assert label == labels[i, 0] and isinstance(label, int)
    np.testing.assert_array_equal(ds[-1][0][0].numpy(), images[4])


def test_rgb_is_channels_first(tmp_path: Path) -> None:
    images = np.arange(3 * 4 * 5 * 3, dtype=np.uint8).reshape(3, 4, 5, 3)
    labels = np.array([[1], [0], [4]])
    ds = NpzImageDataset(_write(tmp_path / "rgb.npz", images, labels))
    assert (ds.channels, ds.image_size, ds.num_classes) == (3, 4, 5)
    image, label = ds[2]
    assert image.shape == (3, 4, 5) and label == 4
    # pixel (h=1, w=3) channel 2 of sample 2
    assert image[2, 1, 3].item() == images[2, 1, 3, 2]
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), images[2])


def test_uncompressed_is_memory_mapped(gray: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, _, _ = gray
    ds = NpzImageDataset(path, "val")
    assert isinstance(ds.images, np.memmap)
    assert Path(ds.images.filename).resolve() == path.resolve()
    assert len(ds) == 2
    with np.load(path) as npz:
        np.testing.assert_array_equal(np.asarray(ds.images), npz["val_images"])
    # A pickled copy (DataLoader worker) maps the file again instead of carrying the data.
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.__dict__["_images"] is None
    np.testing.assert_array_equal(clone[1][0][0].numpy(), ds[1][0][0].numpy())


def test_compressed_falls_back_to_ram(tmp_path: Path) -> None:
    images = np.random.default_rng(3).integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    labels = np.array([[0], [1], [1], [0]])
    path = _write(tmp_path / "c.npz", images, labels, compressed=True)
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("train_images.npy").compress_type == zipfile.ZIP_DEFLATED
    ds = NpzImageDataset(path)
    assert not isinstance(ds.images, np.memmap)
    for i in range(4):
        np.testing.assert_array_equal(ds[i][0].permute(1, 2, 0).numpy(), images[i])
        assert ds[i][1] == labels[i, 0]


def test_multilabel_and_transform(tmp_path: Path) -> None:
    images = np.zeros((3, 4, 4), dtype=np.uint8)
    labels = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=np.int64)
    ds = NpzImageDataset(_write(tmp_path / "ml.npz", images, labels), transform=lambda x: x + 7)
    assert ds.multilabel and ds.num_classes == 4 and ds.labels.shape == (3, 4)
    image, label = ds[0]
    assert label.dtype == torch.float32
    torch.testing.assert_close(label, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert image.unique().tolist() == [7]


def test_task_inferred_or_given(tmp_path: Path) -> None:
    images = np.zeros((4, 5, 5), dtype=np.uint8)
    binary = _write(tmp_path / "b.npz", images, np.array([[0], [1], [1], [0]], dtype=np.uint8))
    assert NpzImageDataset(binary).task == "binary-class"
    # Three classes present; given 5 classes it is still multi-class, given ordinal it is ordinal.
    multi = _write(tmp_path / "m.npz", images, np.array([[0], [1], [2], [0]], dtype=np.uint8))
    assert NpzImageDataset(multi).task == "multi-class"
    assert NpzImageDataset(multi, task="ordinal-regression").task == "ordinal-regression"
    # Two classes seen but five declared: not binary.
    assert NpzImageDataset(binary, num_classes=5).task == "multi-class"
    ml = _write(tmp_path / "ml.npz", images, np.eye(4, 3, dtype=np.uint8))
    assert NpzImageDataset(ml).task == "multi-label, binary-class"
    with pytest.raises(ValueError, match="unknown task 'multiclass'; valid tasks: .*'multi-class'"):
        NpzImageDataset(multi, task="multiclass")
    with pytest.raises(ValueError, match=r"does not match train_labels of shape \(4, 1\)"):
        NpzImageDataset(multi, task="multi-label, binary-class")
    with pytest.raises(ValueError, match=r"train_labels holds class 2, outside \[0, 2\)"):
        NpzImageDataset(multi, num_classes=2)


def test_num_classes_override_and_bad_split(gray: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, _, _ = gray
    assert NpzImageDataset(path, num_classes=9).num_classes == 9
    with pytest.raises(ValueError, match="train.*val.*test"):
        NpzImageDataset(path, "validation")
    with pytest.raises(ValueError, match="has no key 'test_images'") as info:
        NpzImageDataset(path, "test")
    message = str(info.value)
    assert str(path) in message and "test_images" in message and "train_labels" in message


@pytest.mark.parametrize(
    ("size", "name"),
    [
        (28, "pathmnist.npz"),
        (64, "pathmnist_64.npz"),
        (128, "pathmnist_128.npz"),
        (224, "pathmnist_224.npz"),
    ],
)
def test_medmnist_path_names(tmp_path: Path, size: int, name: str) -> None:
    (tmp_path / name).touch()
    assert medmnist_path(tmp_path, "pathmnist", size) == tmp_path / name


@pytest.mark.parametrize(("size", "suffix"), [(28, ""), (128, "_128")])
def test_medmnist_missing_file_explains_download(tmp_path: Path, size: int, suffix: str) -> None:
    from medmnist import INFO

    with pytest.raises(FileNotFoundError) as info:
        medmnist_path(tmp_path, "dermamnist", size)
    message = str(info.value)
    assert str(tmp_path / f"dermamnist{suffix}.npz") in message
    assert INFO["dermamnist"][f"url{suffix}"] in message
    assert INFO["dermamnist"][f"MD5{suffix}"] in message
    root = tmp_path.resolve()
    assert f"dino-mx data download dermamnist --size {size} --root {root}\n" in message
    assert message.endswith(f"then copy dermamnist{suffix}.npz into {root}")


def test_medmnist_file_official_names() -> None:
    from medmnist import INFO

    assert medmnist_file("chestmnist") == (
        "chestmnist.npz",
        INFO["chestmnist"]["url"],
        INFO["chestmnist"]["MD5"],
    )
    name, url, md5 = medmnist_file("pathmnist", 224)
    assert name == "pathmnist_224.npz" and url.endswith("/pathmnist_224.npz?download=1")
    assert md5 == INFO["pathmnist"]["MD5_224"] and len(md5) == 32
    with pytest.raises(ValueError, match=r"size must be one of \(28, 64, 128, 224\), got 32"):
        medmnist_file("pathmnist", 32)


def test_medmnist_bad_flag_and_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pathmnist") as info:
        medmnist_path(tmp_path, "organmnist3d")
    assert "3d" not in str(info.value).split("flags:")[1]
    with pytest.raises(ValueError, match=r"\(28, 64, 128, 224\)"):
        medmnist_path(tmp_path, "pathmnist", 32)


def test_medmnist_info() -> None:
    chest = medmnist_info("chestmnist")
    assert chest["multilabel"] and chest["task"] == "multi-label, binary-class"
    assert chest["num_classes"] == 14 and chest["n_channels"] == 1
    path = medmnist_info("pathmnist")
    assert not path["multilabel"] and path["n_channels"] == 3
    assert path["label_names"][0] == "adipose" and len(path["label_names"]) == 9


def test_bundled_pneumoniamnist() -> None:
    path = bundled_pneumoniamnist_path()
    assert path.is_file()
    counts = {}
    for split in ("train", "val", "test"):
        ds = NpzImageDataset(path, split)
        assert (ds.channels, ds.image_size, ds.num_classes) == (1, 28, 2)
        counts[split] = len(ds)
        if split == "test":  # 234 normal / 390 pneumonia
            assert np.bincount(ds.labels).tolist() == [234, 390]
    assert counts == {"train": 4708, "val": 524, "test": 624}
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and label in (0, 1)

"""Every 2-D MedMNIST flag, in files written exactly as MedMNIST writes them, read through
``build_dataset`` (data.format=medmnist) and cross-checked with the ``medmnist`` package's own
reader.

The official files are ``np.savez`` archives (uncompressed) named ``{flag}.npz`` (28 px) or
``{flag}_{size}.npz``, with ``uint8`` images NHW (grey) or NHWC (RGB) and ``uint8`` labels of
shape ``(N, 1)``, or ``(N, 14)`` for ChestMNIST.
"""

from __future__ import annotations

from pathlib import Path

import medmnist
import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from dino_mx.config import DataConfig
from dino_mx.data import NpzImageDataset, build_dataset
from tests.conftest import make_config

# Known answers from MedMNIST v2 (Yang et al., Scientific Data 10:41, 2023, Table 1):
# flag -> (task, channels, classes)
PAPER = {
    "pathmnist": ("multi-class", 3, 9),
    "chestmnist": ("multi-label, binary-class", 1, 14),
    "dermamnist": ("multi-class", 3, 7),
    "octmnist": ("multi-class", 1, 4),
    "pneumoniamnist": ("binary-class", 1, 2),
    "retinamnist": ("ordinal-regression", 3, 5),
    "breastmnist": ("binary-class", 1, 2),
    "bloodmnist": ("multi-class", 3, 8),
    "tissuemnist": ("multi-class", 1, 8),
    "organamnist": ("multi-class", 1, 11),
    "organcmnist": ("multi-class", 1, 11),
    "organsmnist": ("multi-class", 1, 11),
}
N = {"train": 4, "val": 3, "test": 3}


def _labels(flag: str, split: str) -> np.ndarray:
    """uint8 labels; the train split lacks the last class (so its max + 1 undercounts)."""
    _, _, classes = PAPER[flag]
    n = N[split]
    if flag == "chestmnist":  # (N, 14) 0/1: image i positive for labels i and 13 - i
        labels = np.zeros((n, classes), dtype=np.uint8)
        for i in range(n):
            labels[i, [i, classes - 1 - i]] = 1
        return labels
    if split == "train":
        values = [0, classes - 2, 0, classes - 2]
    else:
        values = [classes - 1, 0, classes - 1]
    return np.array(values, dtype=np.uint8).reshape(n, 1)


def _images(flag: str, size: int, split: str, seed: int) -> np.ndarray:
    _, channels, _ = PAPER[flag]
    shape = (N[split], size, size) + ((3,) if channels == 3 else ())
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_official(root: Path, flag: str, size: int = 28) -> dict[str, np.ndarray]:
    """Write ``root/{flag}[_{size}].npz`` as MedMNIST does; return the arrays written."""
    arrays = {}
    for seed, split in enumerate(N):
        arrays[f"{split}_images"] = _images(flag, size, split, seed)
        arrays[f"{split}_labels"] = _labels(flag, split)
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    np.savez(root / name, **arrays)
    return arrays


def _data_config(root: Path, flag: str, size: int, fmt: str = "medmnist") -> DictConfig:
    file = None if fmt == "medmnist" else (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")
    cfg = DataConfig(name=flag, format=fmt, root=str(root), flag=flag, size=size, file=file)
    return OmegaConf.structured(cfg)


def test_paper_table_covers_every_2d_flag() -> None:
    flags = {f for f in medmnist.INFO if "3d" not in f}
    assert flags == set(PAPER)
    for flag, (task, channels, classes) in PAPER.items():
        info = medmnist.INFO[flag]
        assert (info["task"], info["n_channels"], len(info["label"])) == (task, channels, classes)


CASES = [(flag, 28) for flag in PAPER] + [
    ("dermamnist", 64),
    ("dermamnist", 128),
    ("dermamnist", 224),
    ("chestmnist", 64),
]


@pytest.mark.parametrize(("flag", "size"), CASES)
def test_official_layout_loads(tmp_path: Path, flag: str, size: int) -> None:
    arrays = write_official(tmp_path, flag, size)
    task, channels, classes = PAPER[flag]
    for split in N:
        ds = build_dataset(_data_config(tmp_path, flag, size), split)
        assert isinstance(ds, NpzImageDataset)
        assert isinstance(ds.images, np.memmap)  # np.savez stores members uncompressed
        assert (len(ds), ds.channels, ds.image_size) == (N[split], channels, size)
        # From MedMNIST, not from this split's labels: train lacks the last class.
        assert ds.num_classes == classes and ds.task == task
        assert ds.multilabel == (flag == "chestmnist")
        expected = arrays[f"{split}_labels"].astype(np.int64)
        np.testing.assert_array_equal(ds.labels, expected if ds.multilabel else expected[:, 0])
        for i in range(len(ds)):
            image, label = ds[i]
            assert image.shape == (channels, size, size) and image.dtype == torch.uint8
            raw = arrays[f"{split}_images"][i]
            np.testing.assert_array_equal(
                image.numpy(), raw[None] if channels == 1 else raw.transpose(2, 0, 1)
            )
            if ds.multilabel:
                target = torch.zeros(classes)
                target[[i, classes - 1 - i]] = 1.0
                torch.testing.assert_close(label, target)
            else:
                assert label == int(arrays[f"{split}_labels"][i, 0])


def test_train_split_lacks_last_class(tmp_path: Path) -> None:
    """The class count comes from MedMNIST; the labels alone would give one fewer."""
    write_official(tmp_path, "octmnist")
    file = tmp_path / "octmnist.npz"
    assert NpzImageDataset(file, "train").num_classes == 3  # labels 0 and 2 only
    assert build_dataset(_data_config(tmp_path, "octmnist", 28), "train").num_classes == 4


def test_task_inferred_without_flag(tmp_path: Path) -> None:
    """format=npz has no MedMNIST flag: multi-label for (N, L>1), binary for 2 classes, else
    multi-class (ordinal regression only comes from MedMNIST's INFO)."""
    for flag in ("retinamnist", "breastmnist", "chestmnist"):
        write_official(tmp_path, flag)
    retina = build_dataset(_data_config(tmp_path, "retinamnist", 28, "npz"), "test")
    assert (retina.task, retina.num_classes) == ("multi-class", 5)
    assert build_dataset(_data_config(tmp_path, "retinamnist", 28), "test").task == (
        "ordinal-regression"
    )
    breast = build_dataset(_data_config(tmp_path, "breastmnist", 28, "npz"), "test")
    assert (breast.task, breast.num_classes) == ("binary-class", 2)
    chest = build_dataset(_data_config(tmp_path, "chestmnist", 28, "npz"), "val")
    assert (chest.task, chest.num_classes, chest.multilabel) == (
        "multi-label, binary-class",
        14,
        True,
    )


def test_uint8_labels_regression(tmp_path: Path) -> None:
    """Official uint8 labels raised OverflowError (``labels.max(initial=-1)`` on uint8)."""
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    labels = np.array([[1], [0], [1]], dtype=np.uint8)
    empty = np.zeros((0, 1), dtype=np.uint8)
    np.savez(
        tmp_path / "breastmnist.npz",
        train_images=images,
        train_labels=labels,
        val_images=images[:0],
        val_labels=empty,
        test_images=images,
        test_labels=labels,
    )
    with pytest.raises(OverflowError):
        labels.max(initial=-1)  # the expression that used to run on the raw labels
    ds = NpzImageDataset(tmp_path / "breastmnist.npz", "train")
    assert (ds.num_classes, ds.task, ds.labels.dtype) == (2, "binary-class", np.int64)
    assert [ds[i][1] for i in range(3)] == [1, 0, 1]
    assert NpzImageDataset(tmp_path / "breastmnist.npz", "val").num_classes == 0  # empty split
    val = build_dataset(_data_config(tmp_path, "breastmnist", 28), "val")
    assert (len(val), val.num_classes) == (0, 2)


@pytest.mark.parametrize("flag", ["bloodmnist", "chestmnist", "pneumoniamnist"])
def test_same_items_as_medmnist_reader(tmp_path: Path, flag: str) -> None:
    """Our reader and the ``medmnist`` package's give the same pixels and labels."""
    write_official(tmp_path, flag, 64)
    theirs = getattr(medmnist, medmnist.INFO[flag]["python_class"])(
        split="test", root=str(tmp_path), size=64
    )
    ours = build_dataset(_data_config(tmp_path, flag, 64), "test")
    for i in range(N["test"]):
        pil, target = theirs[i]
        image, label = ours[i]
        pixels = np.asarray(pil)
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        np.testing.assert_array_equal(image.numpy(), pixels)
        if ours.multilabel:
            np.testing.assert_array_equal(label.numpy(), target.astype(np.float32))
        else:
            assert [label] == target.tolist()


def test_pathmnist_config_reads_user_root(tmp_path: Path) -> None:
    """The shipped data=pathmnist config with data.root pointed at the official 128 px file."""
    arrays = write_official(tmp_path, "pathmnist", 128)
    cfg = make_config("data=pathmnist", f"data.root={tmp_path}", "data.size=128")
    ds = build_dataset(cfg.data, "val")
    assert (len(ds), ds.channels, ds.image_size, ds.num_classes) == (3, 3, 128, 9)
    assert ds.task == "multi-class" and ds[2][1] == 8
    np.testing.assert_array_equal(ds[1][0].permute(1, 2, 0).numpy(), arrays["val_images"][1])


def test_labels_outside_medmnist_classes(tmp_path: Path) -> None:
    """A file whose labels do not fit the flag (here 4-class labels under breastmnist)."""
    write_official(tmp_path, "octmnist")
    (tmp_path / "octmnist.npz").rename(tmp_path / "breastmnist.npz")
    with pytest.raises(
        ValueError, match=r"breastmnist.npz: test_labels holds class 3, outside \[0, 2\)"
    ):
        build_dataset(_data_config(tmp_path, "breastmnist", 28), "test")
    write_official(tmp_path, "chestmnist")
    (tmp_path / "chestmnist.npz").rename(tmp_path / "organamnist.npz")
    with pytest.raises(ValueError, match="14 labels per image, expected num_classes=11"):
        build_dataset(_data_config(tmp_path, "organamnist", 28), "val")

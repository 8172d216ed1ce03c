"""``dino_mx.data.check`` on ``.npz`` files: each way a file can be wrong gives its own reason,
and a good file (the shared ones, as their tools wrote them) gives none."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dino_mx.data.check import check_dataset, check_npz
from dino_mx.data.medmnist import bundled_pneumoniamnist_path
from dino_mx.data.npz import NpzImageDataset
from tests.conftest import SHARED_DATA
from tests.data.test_roi import write_roi_npz


def _medmnist(path: Path, **override: np.ndarray) -> Path:
    arrays = {
        "train_images": np.zeros((4, 8, 8), np.uint8),
        "train_labels": np.array([[0], [1], [1], [0]], np.uint8),
        "test_images": np.zeros((2, 8, 8), np.uint8),
        "test_labels": np.array([[1], [0]], np.uint8),
    }
    np.savez(path, **{**arrays, **override})
    return path


def test_good_files_have_no_finding(tmp_path: Path) -> None:
    assert check_npz(bundled_pneumoniamnist_path()).reason is None
    assert check_npz(_medmnist(tmp_path / "m.npz")).reason is None
    assert check_npz(write_roi_npz(tmp_path / "roi.npz", with_val=True)).reason is None


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        (
            {"train_images": np.zeros((4, 8, 8), np.float32)},
            "train_images must be uint8 NHW or NHWC, got float32 (4, 8, 8)",
        ),
        (
            {"test_labels": np.array([[0.5], [1.0]])},
            "test_labels must hold integers (MedMNIST writes uint8), got float64",
        ),
        (
            {"train_labels": np.array([[0], [1], [-1], [0]], np.int64)},
            "train_labels holds negative class -1",
        ),
        (
            {"test_labels": np.array([[1], [0], [1]], np.uint8)},
            "test_labels shape (3, 1) does not match 2 images",
        ),
    ],
)
def test_malformed_medmnist_arrays_name_the_split(
    tmp_path: Path, override: dict[str, np.ndarray], reason: str
) -> None:
    path = _medmnist(tmp_path / "m.npz", **override)
    finding = check_npz(path)
    assert finding.reason == reason and str(finding) == f"{path}: {reason}"


def test_missing_key_and_unknown_layout(tmp_path: Path) -> None:
    path = tmp_path / "half.npz"
    np.savez(path, val_images=np.zeros((1, 4, 4), np.uint8))
    assert check_npz(path).reason == ("has no key 'val_labels'; keys present: ['val_images']")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    assert check_npz(other).reason == (
        "neither MedMNIST layout ({split}_images, {split}_labels) nor roi_npz "
        "(images, boxes, box_image, box_class); keys present: ['x']"
    )


def _flip_byte_in(path: Path, member: str) -> None:
    """Flip the last data byte of ``member`` in place, leaving the zip structure intact."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = bytearray(path.read_bytes())
    local = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[local + 26 : local + 30])  # local header
    data[local + 30 + name_len + extra_len + info.file_size - 1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_member_is_found_by_its_crc(tmp_path: Path) -> None:
    path = _medmnist(tmp_path / "m.npz")
    _flip_byte_in(path, "train_images.npy")
    assert check_npz(path).reason == "member 'train_images.npy' is damaged (its CRC does not match)"
    # Training memory-maps the pixels without reading them all: it cannot see a flipped bit.
    assert len(NpzImageDataset(path)) == 4


def test_overrunning_header_names_the_member(tmp_path: Path) -> None:
    path = _medmnist(tmp_path / "m.npz")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"'shape': (4, 8, 8)", b"'shape': (9, 8, 8)", 1))
    with pytest.raises(ValueError) as info:
        NpzImageDataset(path)
    assert str(info.value) == (
        f"{path}: member 'train_images' is truncated or damaged (its header's shape (9, 8, 8) "
        "overruns its data); re-download or re-write it"
    )


def test_folder_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no image or .npz files under .*\.png.*\.npz"):
        list(check_dataset(tmp_path))
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(ValueError, match="notes.txt is neither an image nor an .npz"):
        list(check_dataset(notes))
    (tmp_path / "sub").mkdir()
    _medmnist(tmp_path / "sub" / "m.npz")
    assert [f.ok for f in check_dataset(tmp_path)] == [True]


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA}")
def test_shared_files_are_readable() -> None:
    findings = list(check_dataset(SHARED_DATA))
    assert len(findings) == 5 and all(f.ok for f in findings), [str(f) for f in findings]

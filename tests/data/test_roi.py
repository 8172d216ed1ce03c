"""Readers of images with regions: the roi_npz file, COCO JSON, and the BCCD file itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException
from PIL import Image

from dino_mx.data import build_dataset, load_coco, load_roi_npz
from dino_mx.errors import one_line
from tests.conftest import SHARED_DATA, make_config

BCCD = SHARED_DATA / "bccd_roi_128.npz"


def write_roi_npz(path: Path, with_val: bool = False) -> Path:
    """5 images of 16 px: splits train, test, train, test, (val | train); 4 boxes."""
    images = np.arange(5 * 16 * 16 * 3, dtype=np.int64).reshape(5, 16, 16, 3) % 256
    np.savez(
        path,
        images=images.astype(np.uint8),
        boxes=np.array([[0, 0, 4, 4], [2, 2, 8, 10], [1, 1, 3, 3], [5, 5, 9, 9]], np.float32),
        box_image=np.array([2, 1, 2, 4]),
        box_class=np.array([0, 1, 1, 0]),
        image_label=np.array([[0], [1], [-1], [1], [0]]),
        split=np.array([0, 1, 0, 1, 2 if with_val else 0]),
    )
    return path


def test_roi_npz_splits_map_boxes_to_their_images(tmp_path):
    path = write_roi_npz(tmp_path / "roi.npz")
    train = load_roi_npz(path, "train", ["cell", "dot"])
    assert len(train) == 3 and list(train.ids) == [0, 2, 4]
    image, label = train[1]  # file image 2
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label == -1
    regions = train.regions(1)
    assert regions.boxes.tolist() == [[0, 0, 4, 4], [1, 1, 3, 3]]
    assert regions.classes.tolist() == [0, 1]
    assert len(train.regions(0)) == 0 and train.regions(2).boxes.tolist() == [[5, 5, 9, 9]]
    assert train.regions(1).select([1]).boxes.tolist() == [[1, 1, 3, 3]]
    test = load_roi_npz(path, "test")
    assert test.regions(0).classes.tolist() == [1] and test.class_names == ["0", "1"]
    assert train.class_ids(["DOT", 0, "1"]) == [1, 0, 1]
    with pytest.raises(ValueError, match="valid classes: 0 cell, 1 dot"):
        train.class_ids(["WBC"])


def test_roi_npz_without_val_says_so_and_missing_keys_are_named(tmp_path):
    path = write_roi_npz(tmp_path / "roi.npz")
    with pytest.raises(ValueError, match=r"no 'val' images .* splits present: \['test', 'train'\]"):
        load_roi_npz(path, "val")
    assert len(load_roi_npz(write_roi_npz(tmp_path / "v.npz", with_val=True), "val")) == 1
    np.savez(tmp_path / "bad.npz", images=np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"bad.npz lacks \['boxes', 'box_image', 'box_class'\]"):
        load_roi_npz(tmp_path / "bad.npz")


def test_coco_json_next_to_an_image_folder(tmp_path):
    (tmp_path / "test").mkdir()
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("L", (8, 8), 50).save(tmp_path / "test" / "b.png")
    coco = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 20, "height": 10, "label": 1},
            {"id": 9, "file_name": "b.png", "width": 8, "height": 8},
        ],
        "annotations": [
            {"id": 1, "image_id": 9, "bbox": [1, 2, 3, 4], "category_id": 5},
            {"id": 2, "image_id": 7, "bbox": [0, 0, 10, 5], "category_id": 3},
        ],
        "categories": [{"id": 5, "name": "lesion"}, {"id": 3, "name": "organ"}],
    }
    (tmp_path / "test.json").write_text(json.dumps(coco))
    data = load_coco(tmp_path, "test")
    assert data.class_names == ["organ", "lesion"]  # in category-id order
    assert data.regions(1).boxes.tolist() == [[1, 2, 4, 6]] and data.regions(1).classes.item() == 1
    assert data.regions(0).classes.tolist() == [0] and list(data.ids) == [7, 9]
    image, label = data[0]
    assert image.shape == (3, 10, 20) and label == 1 and data[1][1] == -1
    assert data.image_sizes.tolist() == [[10, 20], [8, 8]] and data.image_size is None
    with pytest.raises(FileNotFoundError, match="instances_train.json"):
        load_coco(tmp_path, "train")


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigCompositionException) as err:  # a closed choice of the schema
        make_config("data=bccd_roi", f"data.root={tmp_path}", "data.format=hdf5")
    assert one_line(err.value) == (
        "data.format=hdf5: valid choices: medmnist, npz, imagefolder, roi_npz, coco"
    )


@pytest.mark.skipif(not BCCD.is_file(), reason=f"shared BCCD file absent: {BCCD}")
def test_bccd_config_reads_the_shared_file():
    cfg = make_config("data=bccd_roi", f"data.root={SHARED_DATA}").data
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert (len(train), len(test)) == (290, 74) and train.channels == 3
    assert train.class_names == ["WBC", "RBC", "platelets"]
    n_wbc = sum(len(d.regions(i).select([0])) for d in (train, test) for i in range(len(d)))
    # 373 in the file (the data README says 372, before its three label corrections)
    with np.load(BCCD) as raw:
        assert n_wbc == int((raw["box_class"] == 0).sum()) == 373
    boxes = test.regions(0).boxes
    assert boxes.min() >= 0 and boxes.max() <= 128

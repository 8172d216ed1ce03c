"""COCO-style box annotations next to an image folder, as a :class:`RoiDataset`.

Layout of ``folder`` (``data.root/data.file`` with ``data.format=coco``)::

    folder/{split}.json                    or folder/annotations/instances_{split}.json
    folder/<file_name> for each image      or folder/{split}/<file_name>

The JSON is COCO's detection format: ``images`` (``id``, ``file_name``, ``width``,
``height``, optional integer ``label`` for an image-level class), ``annotations``
(``image_id``, ``bbox`` = x, y, width, height in pixels, ``category_id``) and ``categories``
(``id``, ``name``). Category ids map to contiguous class ids in increasing id order. Images are
read lazily, in their own size (the crops and the evaluation resize them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dino_mx.data.bad_image import one_line
from dino_mx.data.imagefolder import _to_array
from dino_mx.data.roi import SPLIT_CODES, RoiDataset


class ImageFiles:
    """Lazy list of image files read as uint8 ``(H, W)`` or ``(H, W, 3)`` arrays."""

    def __init__(self, paths: list[Path], channels: int):
        self.paths = paths
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image.load()
                return _to_array(image, self.channels, "range")
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, ...
            raise OSError(f"cannot read image {path}: {one_line(error, path)}") from error


def annotation_file(folder: Path, split: str) -> Path:
    """The COCO JSON of ``split`` in ``folder``; raises ``FileNotFoundError`` naming both
    accepted places."""
    candidates = [folder / f"{split}.json", folder / "annotations" / f"instances_{split}.json"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no COCO annotations for split '{split}': expected {candidates[0]} or {candidates[1]}"
    )


def _image_path(folder: Path, split: str, file_name: str) -> Path:
    for path in (folder / file_name, folder / split / file_name):
        if path.is_file():
            return path
    raise FileNotFoundError(f"image '{file_name}' not found in {folder} or {folder / split}")


def load_coco(
    folder: str | Path,
    split: str = "train",
    channels: int | None = None,
    on_bad_image: str = "raise",
) -> RoiDataset:
    """One split of a COCO-annotated image folder (layout in the module docstring).

    Args:
        folder: The folder holding the JSON files and images.
        split: ``train``, ``val`` or ``test``.
        channels: 1 or 3; default 3 (RGB), as COCO images are photographs.
        on_bad_image: ``"raise"`` or ``"skip"`` for an image file that cannot be decoded
            (:mod:`dino_mx.data.bad_image`); a missing file is an error either way.

    Raises:
        FileNotFoundError: The JSON or an image is missing.
        ValueError: An annotation names an unknown image or category.
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {tuple(SPLIT_CODES)}, got {split!r}")
    folder = Path(folder)
    coco: dict[str, Any] = json.loads(annotation_file(folder, split).read_text())
    images = coco.get("images", [])
    categories = sorted(coco.get("categories", []), key=lambda c: c["id"])
    class_of = {c["id"]: i for i, c in enumerate(categories)}
    row_of = {im["id"]: i for i, im in enumerate(images)}
    boxes, box_image, box_class = [], [], []
    for ann in coco.get("annotations", []):
        if ann["image_id"] not in row_of or ann["category_id"] not in class_of:
            raise ValueError(
                f"annotation {ann.get('id')} names image {ann['image_id']} / category "
                f"{ann['category_id']}, absent from the images / categories lists"
            )
        x, y, w, h = ann["bbox"]
        boxes.append([x, y, x + w, y + h])
        box_image.append(row_of[ann["image_id"]])
        box_class.append(class_of[ann["category_id"]])
    channels = channels or 3
    dataset = RoiDataset(
        ImageFiles([_image_path(folder, split, im["file_name"]) for im in images], channels),
        np.array([im.get("label", -1) for im in images], dtype=np.int64),
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.array(box_image, dtype=np.int64),
        np.array(box_class, dtype=np.int64),
        [c["name"] for c in categories],
        channels=channels,
        image_sizes=np.array([[im["height"], im["width"]] for im in images]).reshape(-1, 2),
        ids=np.array([im["id"] for im in images]),
        on_bad_image=on_bad_image,
    )
    dataset.bad_images.root = folder  # named in the error's `dino-mx data check` hint
    return dataset

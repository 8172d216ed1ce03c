"""Images with regions of interest: boxes and their classes, for label-guided crops and
localisation scores.

:class:`RoiDataset` keeps the ``(image, label)`` contract of every other dataset, so the k-NN,
the linear probe and plain multi-crop training use it unchanged; the boxes of image ``i`` are
asked for separately with :meth:`RoiDataset.regions`. Whoever needs them (the label-guided
augmentation through :class:`dino_mx.data.SeededAugment`, the localisation score) calls it.

The ``roi_npz`` format (``load_roi_npz``) is one ``.npz`` holding every split:

======================  ==================  ===============================================
key                     dtype, shape        meaning
======================  ==================  ===============================================
``images``              uint8 (N,H,W[,C])   C = 1 or 3
``boxes``               float (M, 4)        x0, y0, x1, y1 pixel edges in the image
``box_image``           int (M,)            image index of each box
``box_class``           int (M,)            class id of each box
``image_label``         int (N,) or (N, 1)  image-level label, -1 unknown (optional)
``split``               int (N,)            0 train, 1 test, 2 val (optional: all train)
``class_names``         str (K,)            names of the box classes (optional)
======================  ==================  ===============================================

A file may have no val images (the BCCD file has none): asking for ``val`` then raises a
``ValueError`` that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dino_mx.data.bad_image import BadImages
from dino_mx.data.npz import open_member, open_npz

SPLIT_CODES = {"train": 0, "test": 1, "val": 2}
REQUIRED_KEYS = ("images", "boxes", "box_image", "box_class")


@dataclass(frozen=True)
class Regions:
    """The regions of interest of one image.

    Attributes:
        boxes: (k, 4) float32 ``x0, y0, x1, y1`` pixel edges in the image's own frame.
        classes: (k,) int64 class ids.
    """

    boxes: Tensor
    classes: Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, classes: Collection[int] | None) -> Regions:
        """The regions whose class is in ``classes`` (all of them for None)."""
        if classes is None:
            return self
        keep = torch.isin(self.classes, torch.as_tensor(list(classes), dtype=torch.int64))
        return Regions(self.boxes[keep], self.classes[keep])

    @staticmethod
    def empty() -> Regions:
        return Regions(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))


class RoiDataset(Dataset):
    """Images with boxes, returned as ``(image, label)``; boxes via :meth:`regions`.

    Args:
        images: Indexable of N uint8 arrays ``(H, W)`` or ``(H, W, C)`` (an array or a lazy
            loader with ``__len__``/``__getitem__``).
        labels: (N,) int64 image labels, -1 for unknown.
        boxes: (M, 4) ``x0, y0, x1, y1`` pixel edges.
        box_image: (M,) index into ``images`` of each box.
        box_class: (M,) class id of each box.
        class_names: Name of each class id.
        channels: Channels of the images (1 or 3).
        image_sizes: (N, 2) ``(height, width)`` of each image; default: all as ``images[0]``.
        ids: (N,) identifier of each image in its source (file row, COCO image id); default
            ``0..N-1``.
        transform: Called on each image (a uint8 ``tv_tensors.Image`` (C, H, W)).
        on_bad_image: An image that cannot be read (files named by ``images.paths``):
            ``"raise"``, or ``"skip"`` to the next readable image, whose label and regions are
            then returned for ``index`` (:mod:`dino_mx.data.bad_image`).

    Attributes:
        bad_images: The unreadable images met by this process (:class:`BadImages`).
    """

    def __init__(
        self,
        images: Any,
        labels: np.ndarray,
        boxes: np.ndarray,
        box_image: np.ndarray,
        box_class: np.ndarray,
        class_names: Sequence[str],
        channels: int,
        image_sizes: np.ndarray | None = None,
        ids: np.ndarray | None = None,
        transform: Callable | None = None,
        on_bad_image: str = "raise",
    ) -> None:
        self.bad_images = BadImages(on_bad_image)
        # index -> the readable image that stood in for it (on_bad_image=skip), so that
        # regions(index) describes the image __getitem__(index) returned.
        self._stand_in: dict[int, int] = {}
        n = len(images)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        box_image = np.asarray(box_image, dtype=np.int64).reshape(-1)
        box_class = np.asarray(box_class, dtype=np.int64).reshape(-1)
        if not len(boxes) == len(box_image) == len(box_class):
            raise ValueError(
                f"boxes {boxes.shape}, box_image {box_image.shape} and box_class "
                f"{box_class.shape} must have one row per box"
            )
        if len(box_image) and (box_image.min() < 0 or box_image.max() >= n):
            raise ValueError(f"box_image holds indices outside [0, {n})")
        if len(boxes) and ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
            raise ValueError("boxes must be x0, y0, x1, y1 with x1 >= x0 and y1 >= y0")
        if len(box_class) and (box_class.min() < 0 or box_class.max() >= len(class_names)):
            raise ValueError(f"box_class ids must lie in [0, {len(class_names)}): {class_names}")
        order = np.argsort(box_image, kind="stable")
        self._boxes = torch.from_numpy(boxes[order])
        self._classes = torch.from_numpy(box_class[order])
        # Boxes of image i are rows offsets[i]:offsets[i + 1] of the sorted table.
        self._offsets = np.searchsorted(box_image[order], np.arange(n + 1))
        self.images = images
        self.labels: np.ndarray = np.asarray(labels, dtype=np.int64).reshape(n)
        self.class_names: list[str] = [str(c) for c in class_names]
        self.channels: int = channels
        self.transform = transform
        self.multilabel: bool = False
        self.num_classes: int = int(self.labels.max(initial=-1)) + 1
        if image_sizes is None:  # every image as the first
            first = np.shape(images[0])[:2] if n else (0, 0)
            image_sizes = np.tile(np.array(first, dtype=np.int64), (n, 1))
        self.image_sizes: np.ndarray = np.asarray(image_sizes, dtype=np.int64).reshape(n, 2)
        same = n and (self.image_sizes == self.image_sizes[0]).all()
        self.image_size: int | None = int(self.image_sizes[0, 0]) if same else None
        self.ids: np.ndarray = np.arange(n) if ids is None else np.asarray(ids).reshape(n)

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, index: int) -> np.ndarray:
        return np.asarray(self.images[index])

    def _path(self, index: int) -> str:
        paths = getattr(self.images, "paths", None)  # a lazy file list (coco) names its files
        return str(paths[index]) if paths is not None else f"image {index}"

    def regions(self, index: int) -> Regions:
        """Boxes (k, 4) and classes (k,) of image ``index``, in its own pixel frame (of the
        image that stood in for it when ``__getitem__(index)`` skipped an unreadable one)."""
        index = self._stand_in.get(index, index)
        lo, hi = self._offsets[index], self._offsets[index + 1]
        return Regions(self._boxes[lo:hi], self._classes[lo:hi])

    def class_ids(self, names: Sequence[str | int]) -> list[int]:
        """Class ids of ``names`` (class names, or ids as ints or digit strings).

        Raises:
            ValueError: A name is neither a class name nor a valid id; the message lists them.
        """
        lowered = [c.lower() for c in self.class_names]
        ids = []
        for name in names:
            text = str(name)
            if text.lower() in lowered:
                ids.append(lowered.index(text.lower()))
            elif text.isdigit() and int(text) < len(self.class_names):
                ids.append(int(text))
            else:
                choices = ", ".join(f"{i} {c}" for i, c in enumerate(self.class_names))
                raise ValueError(f"unknown region class '{name}'; valid classes: {choices}")
        return ids

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """Return ``(image, label)``: a uint8 ``tv_tensors.Image`` (C, H, W) passed through
        ``transform`` when given, and the image label (-1 when unknown).

        Raises:
            OSError: Under ``on_bad_image="raise"``, the image file is unreadable; one line
                naming its path and the reason.
        """
        asked = index
        index, array = self.bad_images.read(self._load, index, len(self), self._path)
        if index != asked:
            self._stand_in[asked] = index
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # HWC -> CHW
        image = tv_tensors.Image(torch.from_numpy(np.array(array, order="C")))  # own copy
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, boxes={len(self._boxes)}, "
            f"classes={self.class_names})"
        )


def load_roi_npz(
    path: str | Path, split: str = "train", class_names: Sequence[str] | None = None
) -> RoiDataset:
    """One split of a ``roi_npz`` file (layout in the module docstring), loaded into memory.

    Args:
        path: The ``.npz`` file.
        split: ``train``, ``val`` or ``test``.
        class_names: Names of the box classes; default the file's ``class_names``, else the ids.

    Raises:
        ValueError: Bad split, no image in it, malformed arrays, a required key missing (the
            message lists the keys present), or a file that is no ``.npz`` or is truncated or
            damaged (the message names the path).
    """
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {tuple(SPLIT_CODES)}, got {split!r}")
    path = Path(path)
    with open_npz(path) as zf:
        keys = sorted(n.removesuffix(".npy") for n in zf.namelist())
        missing = [k for k in REQUIRED_KEYS if k not in keys]
        if missing:
            raise ValueError(f"{path} lacks {missing} (roi_npz format); keys present: {keys}")
        f = {k: np.array(open_member(path, zf, k)) for k in keys}  # into memory: a few MB
    images = f["images"]
    n = len(images)
    split_codes = f["split"].reshape(n) if "split" in f else np.zeros(n, np.int64)
    labels = f["image_label"].reshape(n) if "image_label" in f else np.full(n, -1)
    if class_names is None and "class_names" in f:
        class_names = [str(c) for c in f["class_names"]]
    boxes, box_image, box_class = f["boxes"], f["box_image"], f["box_class"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            f"{path}: images must be uint8 NHW or NHWC, got {images.dtype} {images.shape}"
        )
    if class_names is None:
        class_names = [str(i) for i in range(int(box_class.max(initial=-1)) + 1)]
    chosen = np.flatnonzero(split_codes == SPLIT_CODES[split])  # file indices of this split
    if len(chosen) == 0:
        present = sorted(k for k, v in SPLIT_CODES.items() if (split_codes == v).any())
        raise ValueError(
            f"{path} has no '{split}' images (split code {SPLIT_CODES[split]}); "
            f"splits present: {present}"
        )
    local = np.full(n, -1, dtype=np.int64)
    local[chosen] = np.arange(len(chosen))  # file index -> index within the split
    keep = local[box_image] >= 0
    return RoiDataset(
        images[chosen],
        labels[chosen],
        boxes[keep],
        local[box_image[keep]],
        box_class[keep],
        class_names,
        channels=1 if images.ndim == 3 else int(images.shape[3]),
        ids=chosen,
    )

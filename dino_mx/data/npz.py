"""MedMNIST-layout ``.npz`` datasets, read lazily through a memory map.

A MedMNIST file (Yang et al., "MedMNIST v2", Scientific Data 10:41, 2023) is a NumPy
``.npz`` written by ``np.savez`` (uncompressed) holding ``{split}_images`` (uint8, NHW or
NHWC) and ``{split}_labels`` (``uint8`` in the official files, any integer dtype accepted;
``(N, 1)``, or ``(N, L)`` for multi-label) for the splits train, val and test.
``np.load(..., mmap_mode="r")`` ignores ``mmap_mode`` for ``.npz`` archives and reads
the whole member into RAM, which is 13 GB for PathMNIST-224; the official files are
stored uncompressed, so the member's bytes can be memory-mapped in place instead.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dino_mx.data.tasks import BINARY, MULTICLASS, MULTILABEL, check_task

SPLITS = ("train", "val", "test")

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
# What zipfile, zlib and numpy raise on a damaged or truncated archive.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, struct.error)


def corrupt_npz(path: str | Path, error: BaseException) -> ValueError:
    """The one-line error for an ``.npz`` that zipfile cannot open: names ``path`` and tells a
    file that is no zip at all from a truncated or damaged one (``np.savez`` writes a zip)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head[:2] != b"PK":  # every zip starts with a "PK" record
        return ValueError(
            f"{path}: not an .npz archive (np.savez writes a zip file; this file does not start "
            "like one)"
        )
    reason = " ".join(str(error).split()) or type(error).__name__
    return ValueError(
        f"{path}: truncated or damaged .npz archive (its zip directory cannot be read: {reason}); "
        "re-download or re-write it"
    )


@contextmanager
def open_npz(path: str | Path) -> Iterator[zipfile.ZipFile]:
    """Open an ``.npz`` as the zip archive it is.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not a zip archive, or is truncated or damaged; one line naming
            ``path`` (see :func:`corrupt_npz`).
    """
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as error:
        raise corrupt_npz(path, error) from error
    with zf:
        yield zf


def read_npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header at the position of ``f``."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
    else:  # 2.0 and 3.0 share the 4-byte header length
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), fortran_order, dtype


def _member_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of an uncompressed zip member's data inside the archive."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad zip local header for member {info.filename!r}")
    # The local extra field can differ from the central directory's, so read it here.
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


def open_member(path: Path, zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """Memory-map ``key`` from an ``.npz`` when stored uncompressed, else load it.

    Raises:
        KeyError: ``zf`` has no member ``{key}.npy``.
        ValueError: The member is damaged, truncated, not an ``.npy`` array or holds Python
            objects; one line naming ``path`` and ``key``.
    """
    info = zf.getinfo(f"{key}.npy")
    try:
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # deflated/encrypted
            with zf.open(info) as f:
                _, _, dtype = read_npy_header(f)
                if not dtype.hasobject:
                    f.seek(0)
                    return np.lib.format.read_array(f, allow_pickle=False)
        else:
            offset = _member_offset(path, info)
            with open(path, "rb") as f:
                f.seek(offset)
                shape, fortran_order, dtype = read_npy_header(f)
                data_offset = f.tell()
            if not dtype.hasobject:
                if 0 in shape:  # mmap cannot map zero bytes
                    return np.empty(shape, dtype=dtype)
                if data_offset + int(np.prod(shape)) * dtype.itemsize > offset + info.file_size:
                    raise zipfile.BadZipFile(f"its header's shape {shape} overruns its data")
                order = "F" if fortran_order else "C"
                return np.memmap(
                    path, dtype=dtype, mode="r", offset=data_offset, shape=shape, order=order
                )
    except ZIP_ERRORS as error:
        reason = " ".join(str(error).split())
        raise ValueError(
            f"{path}: member {key!r} is truncated or damaged ({reason}); re-download or re-write it"
        ) from error
    except ValueError as error:  # numpy: bad magic or header, short read, mmap past the end
        reason = " ".join(str(error).split())
        raise ValueError(
            f"{path}: member {key!r} is not a readable .npy array ({reason})"
        ) from error
    raise ValueError(f"{path}: member {key!r} holds Python objects; refusing to unpickle it")


def _read_split(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``(N, H, W[, C])`` uint8 images of ``split`` (memory-mapped when stored
    uncompressed) and its labels as ``(N, L)`` int64, both checked before a loader touches
    them, so a malformed file fails here in one line naming ``path`` and the key."""
    image_key, label_key = f"{split}_images", f"{split}_labels"
    with open_npz(path) as zf:
        keys = sorted(n.removesuffix(".npy") for n in zf.namelist())
        for key in (image_key, label_key):
            if key not in keys:
                raise ValueError(f"{path} has no key {key!r}; keys present: {keys}")
        images = open_member(path, zf, image_key)
        labels = np.asarray(open_member(path, zf, label_key))
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: {label_key} must hold integers (MedMNIST writes uint8), got {labels.dtype}"
        )
    # Official files store uint8: widen before any arithmetic (uint8 cannot hold -1).
    labels = labels.astype(np.int64)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            f"{path}: {image_key} must be uint8 NHW or NHWC, got {images.dtype} {images.shape}"
        )
    if images.ndim == 4 and images.shape[3] < 1:  # any C >= 1 (grey, RGB, multiplex)
        raise ValueError(f"{path}: {image_key} has 0 channels {images.shape}")
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or len(labels) != len(images):
        raise ValueError(
            f"{path}: {label_key} shape {labels.shape} does not match {len(images)} images"
        )
    return images, labels


def _label_meaning(
    path: Path, label_key: str, labels: np.ndarray, num_classes: int | None, task: str | None
) -> tuple[int, str]:
    """``(num_classes, task)`` of the ``(N, L)`` labels: each checked against them when given,
    else read from them (a split may lack the last class, and ordinal regression cannot be
    told from multi-class, so a caller that knows either passes it)."""
    multilabel = labels.shape[1] > 1
    if num_classes is None:
        num_classes = labels.shape[1] if multilabel else int(labels.max(initial=-1)) + 1
    elif multilabel and labels.shape[1] != num_classes:
        raise ValueError(
            f"{path}: {label_key} has {labels.shape[1]} labels per image, "
            f"expected num_classes={num_classes}"
        )
    elif not multilabel and len(labels) and labels.max() >= num_classes:
        raise ValueError(
            f"{path}: {label_key} holds class {int(labels.max())}, "
            f"outside [0, {num_classes}) for num_classes={num_classes}"
        )
    if task is None:
        task = MULTILABEL if multilabel else BINARY if num_classes == 2 else MULTICLASS
    elif (task == MULTILABEL) != multilabel:
        raise ValueError(
            f"{path}: task {task!r} does not match {label_key} of shape "
            f"{labels.shape} (multi-label files have (N, L) labels with L > 1)"
        )
    return int(num_classes), task


class NpzImageDataset(Dataset):
    """One split of a MedMNIST-layout ``.npz`` file, as raw uint8 images.

    Images are memory-mapped when the archive member is stored uncompressed (as in the
    official MedMNIST files) and loaded into RAM otherwise. Augmentation is left to
    ``transform``.

    Args:
        path: The ``.npz`` file.
        split: One of ``"train"``, ``"val"``, ``"test"``.
        transform: Called on each image (a ``tv_tensors.Image``) before it is returned.
        num_classes: Number of classes; by default ``labels.max() + 1`` of this split
            (or the label width for multi-label files). Pass it when a split may lack
            the last class (``build_dataset`` passes MedMNIST's count for format=medmnist).
        task: One of :data:`TASKS` (MedMNIST's names); by default inferred from the labels:
            multi-label when they are ``(N, L)`` with ``L > 1``, binary with 2 classes, else
            multi-class (ordinal regression cannot be told from the labels: pass it).

    Attributes:
        task: The task type, one of :data:`TASKS`.
        multilabel: True when ``task`` is multi-label; labels are then ``(N, L)``.

    Raises:
        ValueError: ``split`` or ``task`` is not a valid choice; the file is not an ``.npz``,
            is truncated or damaged, or lacks ``{split}_images`` or ``{split}_labels``; the
            arrays are malformed, or the labels do not fit ``num_classes``/``task``. The
            message is one line naming the path.
    """

    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        num_classes: int | None = None,
        task: str | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if task is not None:
            check_task(task)
        self.path = Path(path)
        self.split = split
        self.transform = transform
        self._image_key = f"{split}_images"
        images, labels = _read_split(self.path, split)
        self._images: np.ndarray | None = images
        self.multilabel: bool = labels.shape[1] > 1
        # (N, L) for multi-label, else (N,)
        self.labels: np.ndarray = labels if self.multilabel else labels[:, 0]
        self.channels: int = 1 if images.ndim == 3 else int(images.shape[3])
        self.image_size: int = int(images.shape[1])
        self.num_classes, self.task = _label_meaning(
            self.path, f"{split}_labels", labels, num_classes, task
        )

    @property
    def images(self) -> np.ndarray:
        """The ``(N, H, W)`` or ``(N, H, W, C)`` uint8 array (a ``np.memmap`` when mapped)."""
        if self._images is None:  # dropped when pickled into a DataLoader worker
            with open_npz(self.path) as zf:
                self._images = open_member(self.path, zf, self._image_key)
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        # Pickling a memmap copies all its data; let each worker map the file itself.
        state = self.__dict__.copy()
        if isinstance(state["_images"], np.memmap):
            state["_images"] = None
        return state

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int | torch.Tensor]:
        """Return ``(image, label)``.

        ``image`` is a uint8 ``tv_tensors.Image`` of shape ``(C, H, W)``, passed through
        ``transform`` when given; ``label`` is an ``int``, or a float tensor ``(L,)`` of
        0/1 targets for multi-label files.
        """
        array = np.array(self.images[index])  # copy out of the read-only map
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # HWC -> CHW
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(array)))
        if self.transform is not None:
            image = self.transform(image)
        if self.multilabel:
            return image, torch.from_numpy(self.labels[index].astype(np.float32))
        return image, int(self.labels[index])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, split={self.split!r}, n={len(self)})"

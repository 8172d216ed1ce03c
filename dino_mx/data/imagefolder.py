"""Class-per-folder image datasets (``root/<class>/<image>``) as raw uint8 images.

Medical images arrive in many PIL modes: 8-bit gray, RGB(A), palette, CMYK, 1-bit
masks and 16-bit gray TIFF/PNG from X-ray and microscopy. Each is converted to the
requested channel count; 16-bit data is rescaled to 8 bits rather than clipped, which
would saturate everything above 255.

Fluorescence and multiplexed microscopy store C > 1 grey channels in one TIFF, either one
page per channel or one page of C samples per pixel (``(H, W, C)``, photometric
MINISBLACK, as ``tifffile.imwrite(path, data, photometric="minisblack")`` writes). PIL reads
neither, so those files are read with ``tifffile``, every non-spatial axis of the file's first
series becoming a channel. An RGB(A) TIFF stays a colour image (alpha dropped), as a PNG would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets.folder import find_classes, make_dataset

from dino_mx.data.bad_image import BadImages, one_line
from dino_mx.data.channels import ConvertChannels, check_channels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

# Modes with one intensity channel; "LA"/"La" carry an alpha that is dropped.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


def _high_depth_to_uint8(array: np.ndarray, scaling: str) -> np.ndarray:
    """Map 16/32-bit integer or float gray pixels to uint8.

    ``"range"`` divides integers by 257 so 0..65535 maps onto 0..255 exactly (257 * k
    -> k); float images, which have no fixed range, are always min-max stretched.
    """
    values = array.astype(np.float64)
    if scaling == "range" and array.dtype.kind in "iu":
        values = np.clip(values, 0, 65535) / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        values = (values - low) * (255.0 / (high - low)) if high > low else values * 0.0
    return np.rint(values).astype(np.uint8)


def _to_array(image: Image.Image, channels: int | None, scaling: str) -> np.ndarray:
    """Convert a PIL image of any mode to a uint8 array ``(H, W)`` or ``(H, W, 3)``.

    Grey modes give ``(H, W)`` unless ``channels`` is 3 (replicated), colour modes give RGB
    unless ``channels`` is 1 (PIL's luma); other counts (and None, the file's own) are left to
    :class:`ConvertChannels`.
    """
    if image.mode == "P":  # palette: expand, keeping a transparency entry's colour
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _HIGH_DEPTH_MODES:
        gray = _high_depth_to_uint8(np.asarray(image), scaling)
        return np.repeat(gray[:, :, None], 3, axis=2) if channels == 3 else gray
    if channels == 1:
        return np.asarray(image.convert("L"))
    if image.mode in _GRAY_MODES:  # replicate, avoiding colour-matrix rounding
        gray = np.asarray(image.convert("L"))
        return np.repeat(gray[:, :, None], 3, axis=2) if channels == 3 else gray
    return np.asarray(image.convert("RGB"))  # RGBA drops alpha; CMYK/YCbCr/LAB converted


_TIFF_GREY = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE)


def _tiff_channels(tif: tifffile.TiffFile) -> int | None:
    """Channel count of a multi-channel grey TIFF (pages or samples), else None (PIL reads it)."""
    series = tif.series[0]
    if tif.pages[0].photometric not in _TIFF_GREY:
        return None
    axes = series.axes
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"TIFF series has axes {axes!r} {series.shape}: no Y and X axes")
    channels = int(np.prod([n for a, n in zip(axes, series.shape) if a not in "YX"]))
    return channels if channels > 1 else None


def _read_multichannel_tiff(tif: tifffile.TiffFile, scaling: str) -> np.ndarray:
    """The first series of a multi-channel grey TIFF as uint8 ``(H, W, C)``: every axis but Y
    and X (pages, samples, ImageJ's C/Z/T) flattened into channels in file order."""
    series = tif.series[0]
    data = series.asarray()
    axes = series.axes
    data = np.moveaxis(data, (axes.index("Y"), axes.index("X")), (0, 1))
    data = data.reshape(data.shape[0], data.shape[1], -1)  # (H, W, C)
    if tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISWHITE and data.dtype.kind in "u":
        data = np.iinfo(data.dtype).max - data  # 0 is white: invert, as PIL does
    if data.dtype == np.uint8:
        return np.ascontiguousarray(data)
    if data.dtype == np.bool_:
        return data.astype(np.uint8) * 255
    # Each channel on its own: fluorescence channels differ in brightness by orders of magnitude.
    channels = [_high_depth_to_uint8(data[:, :, c], scaling) for c in range(data.shape[2])]
    return np.stack(channels, axis=2)


def _is_tiff(path: str) -> bool:
    return path.lower().endswith((".tif", ".tiff"))


def read_image(path: str, channels: int | None = None, scale_16bit: str = "range") -> np.ndarray:
    """Decode the whole of one image file as uint8 ``(H, W)`` or ``(H, W, C)``.

    A multi-channel grey TIFF gives all its channels; any other file gives grey ``(H, W)``
    or RGB ``(H, W, 3)``, converted towards ``channels`` (1: luma, 3: grey repeated) when
    given.

    Raises:
        Whatever PIL or tifffile raise for a truncated or corrupt file (``OSError``,
        ``ValueError``, ``SyntaxError``, ...), without the path.
    """
    if _is_tiff(path):
        with tifffile.TiffFile(path) as tif:
            if _tiff_channels(tif) is not None:
                return _read_multichannel_tiff(tif, scale_16bit)
    with Image.open(path) as image:
        image.load()  # decodes every pixel: a truncated file fails here, not later
        return _to_array(image, channels, scale_16bit)


class ImageFolderDataset(Dataset):
    """Images in class sub-folders of ``root``, returned as uint8 ``(C, H, W)`` images.

    Classes are the sub-folder names in sorted order (index 0 is the first name), found
    with ``torchvision.datasets.folder.find_classes``. Files with extensions .png, .jpg,
    .jpeg, .tif, .tiff (any case) are used. A grey TIFF with several pages, or with several
    samples per pixel, is one image of that many channels (read with ``tifffile``); other
    multi-page TIFFs (RGB pages) give their first page.

    Args:
        root: Folder with one sub-folder per class.
        transform: Called on each image (a ``tv_tensors.Image``) before it is returned.
        channels: Channels returned, any C >= 1; ``None`` infers it from the first image: 1
            for gray modes (L, I;16, I, F, 1, LA), the page/sample count of a multi-channel
            grey TIFF, else 3. Images of other counts are converted where a rule exists
            (grey repeated, RGB to luma with PIL's ``convert("L")``), else reading fails.
        scale_16bit: How 16-bit/32-bit gray is mapped to 8 bits: ``"range"`` divides by
            257 (the full uint16 range onto 0..255, same mapping for every image);
            ``"minmax"`` stretches each image's min..max onto 0..255, each channel of a
            multi-channel TIFF on its own (use it for 10- or 12-bit data stored in 16-bit
            files, which "range" would leave dark).
        on_bad_image: A file that cannot be read: ``"raise"`` an error naming it, or
            ``"skip"`` it (logged once per process, counted in ``bad_images``) and return the
            next readable sample in file order (:mod:`dino_mx.data.bad_image`).

    Attributes:
        bad_images: The unreadable files met by this process (:class:`BadImages`).

    Raises:
        ValueError: ``channels``, ``scale_16bit`` or ``on_bad_image`` is invalid.
        FileNotFoundError: ``root`` has no class folders, or a class has no images.
        OSError: Under ``on_bad_image="raise"``, the first image (read to infer ``channels``)
            is unreadable; under ``"skip"``, no image is.
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable | None = None,
        channels: int | None = None,
        scale_16bit: Literal["range", "minmax"] = "range",
        on_bad_image: Literal["raise", "skip"] = "raise",
    ) -> None:
        if channels is not None:
            check_channels(channels, "channels")
        if scale_16bit not in ("range", "minmax"):
            raise ValueError(f"scale_16bit must be 'range' or 'minmax', got {scale_16bit!r}")
        self.root = Path(root)
        self.bad_images = BadImages(on_bad_image, self.root)
        self.transform = transform
        self.scale_16bit = scale_16bit
        self.classes, self.class_to_idx = find_classes(str(self.root))
        self.samples: list[tuple[str, int]] = make_dataset(
            str(self.root), self.class_to_idx, extensions=IMAGE_EXTENSIONS
        )
        self.labels: np.ndarray = np.array([t for _, t in self.samples], dtype=np.int64)
        self.num_classes: int = len(self.classes)
        self.multilabel: bool = False
        self.image_size: int | None = None  # images may differ in size
        if channels is None:  # from the first (under skip: the first readable) image
            channels = 3
            if self.samples:
                _, channels = self.bad_images.read(
                    self._infer_channels, 0, len(self.samples), self._path
                )
        self.channels: int = channels

    def _path(self, index: int) -> str:
        return self.samples[index][0]

    def _infer_channels(self, index: int) -> int:
        path = self._path(index)
        try:
            if _is_tiff(path):
                with tifffile.TiffFile(path) as tif:  # reads the headers only
                    channels = _tiff_channels(tif)
                if channels is not None:
                    return channels
            with Image.open(path) as image:  # reads the header only
                return 1 if image.mode in _GRAY_MODES else 3
        except Exception as error:
            raise OSError(f"cannot read image {path}: {one_line(error, path)}") from error

    def load(self, index: int) -> np.ndarray:
        """Read sample ``index`` as a uint8 array ``(H, W)`` or ``(H, W, C)``, C = ``channels``.

        Raises:
            OSError: The file is corrupt or unreadable; the message names its path.
            ValueError: The image's channels cannot be converted to ``channels`` (say an RGB
                image in a folder of 4-channel TIFFs); the message names its path.
        """
        path = self._path(index)
        try:
            array = read_image(path, self.channels, self.scale_16bit)
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, ...
            raise OSError(f"cannot read image {path}: {one_line(error, path)}") from error
        source = 1 if array.ndim == 2 else array.shape[2]
        if source == self.channels:
            return array
        try:
            chw = torch.from_numpy(
                np.array(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
            )
            converted = ConvertChannels(self.channels)(chw)  # (C, H, W)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        return converted.numpy().transpose(1, 2, 0)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """Return ``(image, label)``: a uint8 ``tv_tensors.Image`` ``(C, H, W)`` passed
        through ``transform`` when given, and the class index. Under ``on_bad_image="skip"``
        an unreadable file's sample is the next readable one, with that one's label.

        Raises:
            OSError, ValueError: Under ``on_bad_image="raise"``, the file is unreadable; one
                line naming its path and the reason.
        """
        index, array = self.bad_images.read(self.load, index, len(self), self._path)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)  # HWC -> CHW
        image = tv_tensors.Image(torch.from_numpy(np.array(array, order="C")))  # own copy
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.samples[index][1])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.root)!r}, n={len(self)}, "
            f"channels={self.channels}, classes={self.classes})"
        )

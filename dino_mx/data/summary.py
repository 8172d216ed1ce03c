"""A text summary of an ``.npz`` data file, for ``dino-mx data info FILE``.

A MedMNIST-layout file gets, per split, its image and label arrays and the count of each
class (of positives per label when multi-label); a file named as an official MedMNIST file
(``{flag}.npz``, ``{flag}_{size}.npz``) also gets MedMNIST's task, label names, sample counts
and md5 to compare with. Any other ``.npz`` (e.g. the ``roi_npz`` layout) gets its arrays and
the counts of its small integer arrays (``split``, ``box_class``, ...). Only the array headers
and the label-sized arrays are read, never the images.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dino_mx.data.download import file_md5
from dino_mx.data.medmnist import medmnist_file, medmnist_info
from dino_mx.data.npz import SPLITS, ZIP_ERRORS, open_member, open_npz, read_npy_header
from dino_mx.data.roi import SPLIT_CODES

_OFFICIAL_NAME = re.compile(r"^([a-z]+mnist)(?:_(\d+))?\.npz$")
MAX_VALUES = 20  # an integer array with more distinct values is an id, not a label: no counts


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``key -> (shape, dtype)`` of every array in the archive, reading only the headers."""
    out = {}
    with open_npz(path) as zf:
        for name in zf.namelist():
            if not name.endswith(".npy"):
                continue
            try:
                with zf.open(name) as f:
                    shape, _, dtype = read_npy_header(f)
            except (*ZIP_ERRORS, ValueError) as error:
                reason = " ".join(str(error).split())
                raise ValueError(
                    f"{path}: member {name!r} is truncated or damaged ({reason})"
                ) from error
            out[name.removesuffix(".npy")] = (shape, dtype)
    return out


@contextmanager
def _arrays(path: Path) -> Iterator[Callable[[str], np.ndarray]]:
    """A reader of the archive's arrays by key; errors name ``path`` (see :func:`open_member`)."""
    with open_npz(path) as zf:
        yield lambda key: np.asarray(open_member(path, zf, key))


def official_medmnist(path: str | Path) -> tuple[str, int] | None:
    """``(flag, size)`` when the file name is an official 2-D MedMNIST one, else None."""
    match = _OFFICIAL_NAME.match(Path(path).name)
    if match is None:
        return None
    flag, size = match[1], int(match[2] or 28)
    try:
        medmnist_file(flag, size)
    except ValueError:
        return None
    return flag, size


def _array(shape: tuple[int, ...], dtype: np.dtype) -> str:
    return f"{dtype} {shape}"


def _counts(values: np.ndarray, names: list[str] | None = None) -> str:
    """``"0 name: n, 1 name: n"`` for each value present (and each named one)."""
    present, counts = np.unique(values, return_counts=True)
    table = dict(zip(present.tolist(), counts.tolist(), strict=True))
    keys = sorted(set(table) | set(range(len(names or []))))
    named = names or []
    return ", ".join(
        f"{k}" + (f" {named[k]}" if 0 <= k < len(named) else "") + f": {table.get(k, 0)}"
        for k in keys
    )


def _medmnist_lines(path: Path, headers: dict[str, Any], info: dict[str, Any] | None) -> list[str]:
    names = info["label_names"] if info else None
    lines = []
    with _arrays(path) as npz:
        for split in SPLITS:
            image_key, label_key = f"{split}_images", f"{split}_labels"
            if image_key not in headers:
                lines.append(f"  {split}: absent")
                continue
            shape, dtype = headers[image_key]
            official = ""
            if info and shape[0] != info["n_samples"][split]:
                official = f" (MedMNIST has {info['n_samples'][split]})"
            lines.append(f"  {split}: {shape[0]} images{official}, {_array(shape, dtype)}")
            if label_key not in headers:
                lines.append(f"    no {label_key}")
                continue
            labels = npz(label_key)
            lines.append(f"    labels {_array(labels.shape, labels.dtype)}")
            if labels.ndim == 2 and labels.shape[1] > 1:
                positives = labels.astype(np.int64).sum(0).tolist()
                per_label = ", ".join(
                    f"{i}" + (f" {names[i]}" if names and i < len(names) else "") + f": {n}"
                    for i, n in enumerate(positives)
                )
                lines.append(f"    positives per label: {per_label}")
            else:
                lines.append(f"    classes: {_counts(labels.reshape(-1).astype(np.int64), names)}")
    return lines


def _other_lines(path: Path, headers: dict[str, Any]) -> list[str]:
    lines = [f"  {key}: {_array(shape, dtype)}" for key, (shape, dtype) in headers.items()]
    codes = {v: k for k, v in SPLIT_CODES.items()}
    with _arrays(path) as npz:
        for key, (shape, dtype) in headers.items():
            small = len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)
            if not (np.issubdtype(dtype, np.integer) and small):
                continue
            values = npz(key).reshape(-1).astype(np.int64)
            present, counts = np.unique(values, return_counts=True)
            if len(present) > MAX_VALUES:
                continue
            if key == "split":
                text = ", ".join(
                    f"{codes.get(v, v)} {n}"
                    for v, n in zip(present.tolist(), counts.tolist(), strict=True)
                )
                lines.append(f"  images per split: {text}")
            else:
                lines.append(f"  {key} counts: {_counts(values)}")
    return lines


def describe_npz(path: str | Path, md5: bool = True) -> str:
    """Summarise an ``.npz`` data file as text (see the module docstring).

    Args:
        path: The ``.npz`` file.
        md5: Compute the file's md5 (and compare it with MedMNIST's for an official name).

    Returns:
        Several lines, without a trailing newline.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a NumPy ``.npz`` archive, or is truncated or damaged; one
            line naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    headers = _headers(path)
    size_mb = path.stat().st_size / 1e6
    head = f"{path.name}: {size_mb:.1f} MB"
    official = official_medmnist(path)
    if md5:
        digest = file_md5(path)
        head += f", md5 {digest}"
        if official is not None:
            expected = medmnist_file(*official).md5
            head += " (the official md5)" if digest == expected else f" (official: {expected})"
    lines = [head]
    info = None
    if official is not None:
        flag, size = official
        info = medmnist_info(flag)
        lines.append(
            f"MedMNIST {flag} at {size} px: {info['task']}, {info['num_classes']} "
            f"{'labels' if info['multilabel'] else 'classes'}, {info['n_channels']} channel(s)"
        )
    if any(f"{s}_images" in headers for s in SPLITS):
        lines.append("layout: MedMNIST ({split}_images, {split}_labels)")
        lines += _medmnist_lines(path, headers, info)
    else:
        lines.append(f"layout: not MedMNIST (no {{split}}_images keys); {len(headers)} arrays")
        lines += _other_lines(path, headers)
    return "\n".join(lines)

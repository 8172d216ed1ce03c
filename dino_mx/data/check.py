"""Find the files of a dataset that cannot be read, before a long run meets them.

``dino-mx data check PATH`` (:mod:`dino_mx.data.cli`) walks a folder (recursively) or takes
one file:

- an image (.png, .jpg, .jpeg, .tif, .tiff, any case) is decoded in full, as
  :class:`~dino_mx.data.ImageFolderDataset` would read it, so a truncated file fails here
  rather than hours into training;
- an ``.npz`` has every member's CRC checked (the whole file is read once), and then every
  split opened as training opens it: MedMNIST layout (``{split}_images``, ``{split}_labels``:
  dtypes, shapes, integer labels that fit) or ``roi_npz`` (``images``, ``boxes``, ...).

Other files (JSON annotations, notes) are left alone. Each file gives one :class:`Finding`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dino_mx.data.bad_image import one_line
from dino_mx.data.imagefolder import IMAGE_EXTENSIONS, read_image
from dino_mx.data.npz import SPLITS, NpzImageDataset, corrupt_npz, open_member, open_npz
from dino_mx.data.roi import REQUIRED_KEYS, SPLIT_CODES, load_roi_npz


@dataclass(frozen=True)
class Finding:
    """One checked file: ``reason`` is None when it reads, else what is wrong (one line)."""

    path: Path
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def __str__(self) -> str:
        return f"{self.path}: {self.reason or 'ok'}"


def _without_path(path: Path, message: str) -> str:
    """``message`` less a leading ``"{path}: "`` or ``"{path} "`` (the line names it already)."""
    for prefix in (f"{path}: ", f"{path} "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def check_image(path: Path) -> Finding:
    """Decode the image ``path`` in full; the finding says why it cannot be read."""
    try:
        read_image(str(path))
    except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, ...
        return Finding(path, f"cannot decode ({type(error).__name__}: {one_line(error, path)})")
    return Finding(path)


def _label_problems(dataset: NpzImageDataset) -> list[str]:
    """What :class:`NpzImageDataset` accepts but training or evaluation would get wrong."""
    labels, key = dataset.labels, f"{dataset.split}_labels"
    if dataset.multilabel and len(labels) and not np.isin(labels, (0, 1)).all():
        return [f"{key} of a multi-label file must be 0/1, found {sorted(np.unique(labels))[:5]}"]
    if not dataset.multilabel and len(labels) and labels.min() < 0:
        return [f"{key} holds negative class {int(labels.min())}"]
    return []


def _medmnist_problems(path: Path, keys: list[str]) -> list[str]:
    problems = []
    for split in SPLITS:
        if f"{split}_images" not in keys and f"{split}_labels" not in keys:
            continue  # a file may lack a split (the k-NN then says so)
        try:
            dataset = NpzImageDataset(path, split)
        except ValueError as error:
            problems.append(_without_path(path, one_line(error)))
            continue
        problems += _label_problems(dataset)
    return problems


def _roi_problems(path: Path, split_codes: np.ndarray | None) -> list[str]:
    present = ["train"] if split_codes is None else []
    if split_codes is not None:
        present = [s for s, code in SPLIT_CODES.items() if (split_codes == code).any()]
        unknown = sorted(set(np.unique(split_codes).tolist()) - set(SPLIT_CODES.values()))
        if unknown:
            return [f"split holds codes {unknown}; valid: {SPLIT_CODES}"]
    problems = []
    for split in present:
        try:
            load_roi_npz(path, split)
        except ValueError as error:
            problems.append(_without_path(path, one_line(error)))
    return problems


def check_npz(path: Path) -> Finding:
    """Check every member's CRC and open every split as training would (module docstring)."""
    try:
        with open_npz(path) as zf:
            try:
                damaged = zf.testzip()  # reads every member, comparing its CRC
            except Exception as error:  # zlib, EOF: a member cut short
                return Finding(path, _without_path(path, str(corrupt_npz(path, error))))
            if damaged is not None:
                return Finding(path, f"member {damaged!r} is damaged (its CRC does not match)")
            keys = sorted(n.removesuffix(".npy") for n in zf.namelist())
            split_codes = np.asarray(open_member(path, zf, "split")) if "split" in keys else None
    except ValueError as error:
        return Finding(path, _without_path(path, one_line(error)))
    if any(f"{s}_images" in keys or f"{s}_labels" in keys for s in SPLITS):
        problems = _medmnist_problems(path, keys)
    elif all(k in keys for k in REQUIRED_KEYS):
        problems = _roi_problems(path, split_codes)
    else:
        problems = [
            f"neither MedMNIST layout ({{split}}_images, {{split}}_labels) nor roi_npz "
            f"({', '.join(REQUIRED_KEYS)}); keys present: {keys}"
        ]
    return Finding(path, "; ".join(problems) or None)


def is_checked(path: Path) -> bool:
    """Whether :func:`check_dataset` reads ``path`` (an image or ``.npz`` by its suffix)."""
    return path.suffix.lower() in (*IMAGE_EXTENSIONS, ".npz")


def check_dataset(path: str | Path) -> Iterator[Finding]:
    """One :class:`Finding` per image or ``.npz`` file under ``path`` (or ``path`` itself),
    in sorted path order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a file that is neither an image nor an ``.npz``, or a folder
            without any.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        if not is_checked(path):
            kinds = ", ".join((*IMAGE_EXTENSIONS, ".npz"))
            raise ValueError(f"{path} is neither an image nor an .npz; data check reads {kinds}")
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_checked(p))
        if not files:
            kinds = ", ".join((*IMAGE_EXTENSIONS, ".npz"))
            raise ValueError(f"no image or .npz files under {path} (data check reads {kinds})")
    for file in files:
        yield check_npz(file) if file.suffix.lower() == ".npz" else check_image(file)

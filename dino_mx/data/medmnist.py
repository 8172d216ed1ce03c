"""The MedMNIST catalogue: flags, task types, official file names, URLs and md5s.

Everything comes from the ``medmnist`` package's ``INFO`` table, so a new MedMNIST release is
picked up by upgrading the package. The files themselves are read by
:class:`~dino_mx.data.npz.NpzImageDataset` and fetched by :mod:`dino_mx.data.download`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

MEDMNIST_SIZES = (28, 64, 128, 224)


def _check_flag(flag: str) -> dict[str, Any]:
    from medmnist import INFO  # imported here: medmnist pulls in sklearn (~2 s)

    flags = sorted(f for f in INFO if "3d" not in f)
    if flag not in flags:
        raise ValueError(f"unknown 2-D MedMNIST flag {flag!r}; valid flags: {flags}")
    return INFO[flag]


def medmnist_info(flag: str) -> dict[str, Any]:
    """Summarise a 2-D MedMNIST dataset from ``medmnist.INFO``.

    Args:
        flag: Dataset flag, e.g. ``"pathmnist"``.

    Returns:
        Dict with ``task`` (e.g. ``"multi-class"``), ``multilabel`` (``True`` for
        ``"multi-label, binary-class"``), ``n_channels``, ``num_classes``, ``label_names``
        (list indexed by class), ``n_samples`` (per split) and ``license``.

    Raises:
        ValueError: ``flag`` is not a 2-D MedMNIST flag.
    """
    info = _check_flag(flag)
    names = [info["label"][k] for k in sorted(info["label"], key=int)]
    return {
        "flag": flag,
        "task": info["task"],
        "multilabel": info["task"].startswith("multi-label"),
        "n_channels": int(info["n_channels"]),
        "num_classes": len(names),
        "label_names": names,
        "n_samples": dict(info["n_samples"]),
        "license": info["license"],
    }


class MedmnistFile(NamedTuple):
    """Where MedMNIST publishes one file: its official name, URL and md5."""

    name: str
    url: str
    md5: str


def medmnist_file(flag: str, size: int = 28) -> MedmnistFile:
    """The official file name, URL and md5 of a 2-D MedMNIST file, from ``medmnist.INFO``.

    The name is ``{flag}.npz`` at 28 px and ``{flag}_{size}.npz`` at 64, 128 and 224 px.

    Raises:
        ValueError: ``flag`` or ``size`` is not a valid choice (the message lists them).
    """
    info = _check_flag(flag)
    if size not in MEDMNIST_SIZES:
        raise ValueError(f"MedMNIST size must be one of {MEDMNIST_SIZES}, got {size!r}")
    suffix = "" if size == 28 else f"_{size}"
    return MedmnistFile(f"{flag}{suffix}.npz", info[f"url{suffix}"], info[f"MD5{suffix}"])


def medmnist_path(root: str | Path, flag: str, size: int = 28) -> Path:
    """Locate a MedMNIST file under ``root`` with MedMNIST's own file name.

    The name is ``{flag}.npz`` at 28 px and ``{flag}_{size}.npz`` at 64, 128 and 224 px.
    Nothing is downloaded.

    Args:
        root: Folder holding the ``.npz`` files.
        flag: 2-D MedMNIST flag, e.g. ``"pathmnist"``.
        size: Image side in pixels: 28, 64, 128 or 224.

    Returns:
        Path of the existing file.

    Raises:
        ValueError: ``flag`` or ``size`` is not a valid choice.
        FileNotFoundError: The file is missing; the message gives the official URL, its
            md5 and how to fetch it.
    """
    name, url, md5 = medmnist_file(flag, size)
    path = Path(root) / name
    if not path.is_file():
        root_str = str(Path(root).expanduser().resolve())
        raise FileNotFoundError(
            f"MedMNIST file not found: {path}\n"
            f"  fetch it: dino-mx data download {flag} --size {size} --root {root_str}\n"
            f"  official URL: {url}\n  md5: {md5}\n"
            f"Offline? Run that command (or wget -O {name} '{url}' && md5sum {name}) on a "
            f"machine with internet access, then copy {name} into {root_str}"
        )
    return path


def bundled_pneumoniamnist_path() -> Path:
    """Path of the PneumoniaMNIST copy shipped in ``dino_mx/assets`` (see its README).

    Returns:
        Path to ``pneumoniamnist.npz`` (28 px gray chest X-rays, 2 classes, CC BY 4.0).
    """
    return Path(__file__).resolve().parent.parent / "assets" / "pneumoniamnist.npz"

"""``dino-mx data``: fetch official MedMNIST files, describe ``.npz`` data files and find the
unreadable files of a dataset.

Launched as ``dino-mx data download FLAG [--size S] [--root DIR]``,
``dino-mx data download --all [--size S] [--root DIR]``, ``dino-mx data info FILE...`` and
``dino-mx data check PATH...`` (dispatched by dino_mx/cli.py). Exit status: 0 on success, 2 for
a bad argument (unknown flag or size, missing file), 1 when a download fails (network, HTTP,
md5) or ``check`` finds an unreadable file; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dino_mx.data.medmnist import MEDMNIST_SIZES
from dino_mx.errors import reports_errors


def _flags() -> list[str]:
    from medmnist import INFO  # imported here: medmnist pulls in sklearn (~2 s)

    return sorted(f for f in INFO if "3d" not in f)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dino-mx data",
        description="Fetch MedMNIST files, describe .npz data files, find unreadable files.",
    )
    commands = parser.add_subparsers(dest="command", metavar="download|info|check")
    download = commands.add_parser(
        "download",
        help="fetch an official 2-D MedMNIST file (md5-checked, resumable)",
        description=(
            "Fetch official 2-D MedMNIST .npz files from their Zenodo URLs into --root, under "
            "MedMNIST's file names (pathmnist.npz, pathmnist_64.npz, ...), which is where "
            "data.format=medmnist with data.root=DIR looks. An interrupted download resumes; "
            "a file is moved into place only once its md5 matches."
        ),
    )
    download.add_argument("flag", nargs="?", help="MedMNIST flag, e.g. pathmnist")
    download.add_argument("--all", action="store_true", help="every 2-D flag")
    download.add_argument(
        "--size",
        type=int,
        default=28,
        help=f"image side in pixels, one of {', '.join(map(str, MEDMNIST_SIZES))} (default 28; "
        "the 224 px files are large: pathmnist_224.npz is ~13 GB)",
    )
    download.add_argument("--root", default=".", help="folder for the files (default: .)")
    download.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait per connection or read"
    )
    info = commands.add_parser(
        "info",
        help="describe .npz files: splits, shapes, dtypes, class counts",
        description="Describe .npz data files: per split the image and label arrays and the "
        "count of each class; the MedMNIST task and label names when the file has an official "
        "MedMNIST name.",
    )
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--no-md5", action="store_true", help="skip hashing the file")
    check = commands.add_parser(
        "check",
        help="list the files of a dataset that cannot be read (exit 1 if any)",
        description="Decode every image (.png, .jpg, .jpeg, .tif, .tiff) under each PATH, or "
        "open every split of each .npz (CRCs, dtypes, shapes, labels), and print one line per "
        "unreadable file with the reason, then a summary. Run it before a long training: one "
        "bad file stops a run with data.on_bad_image=raise (the default).",
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="a dataset folder or file")
    check.add_argument("--all", action="store_true", help="also print a line per good file")
    return parser


def _error(message: str) -> None:
    print(f"dino-mx data: error: {message}", file=sys.stderr)


def _download(args: argparse.Namespace) -> int:
    from dino_mx.data.download import DownloadError, download_medmnist

    if args.all == bool(args.flag):
        _error("give one MedMNIST flag or --all (e.g. `dino-mx data download pathmnist`)")
        return 2
    if args.size not in MEDMNIST_SIZES:
        _error(f"--size must be one of {', '.join(map(str, MEDMNIST_SIZES))}, got {args.size}")
        return 2
    flags = _flags() if args.all else [args.flag]
    for flag in flags:
        try:
            path, fetched = download_medmnist(flag, args.size, args.root, args.timeout)
        except ValueError as err:
            _error(str(err))
            return 2
        except DownloadError as err:
            _error(str(err))
            return 1
        print(f"{path}: {'downloaded, md5 ok' if fetched else 'already there, md5 ok'}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from dino_mx.data.summary import describe_npz

    status = 0
    for i, file in enumerate(args.files):
        try:
            text = describe_npz(Path(file), md5=not args.no_md5)
        except (FileNotFoundError, ValueError) as err:
            _error(str(err))
            status = 2
            continue
        print(("\n" if i else "") + text)
    return status


def _check(args: argparse.Namespace) -> int:
    from dino_mx.data.check import check_dataset

    status = 0
    for path in args.paths:
        checked = bad = 0
        try:
            for finding in check_dataset(path):
                checked += 1
                if not finding.ok:
                    bad += 1
                if args.all or not finding.ok:
                    print(finding, flush=True)
        except (FileNotFoundError, ValueError) as err:
            _error(str(err))
            status = 2
            continue
        print(f"{path}: {checked} file(s) checked, {bad} unreadable")
        status = status or (1 if bad else 0)
    return status


@reports_errors("dino-mx data")
def main(argv: list[str] | None = None) -> int:
    """Run ``dino-mx data`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "download":
        return _download(args)
    if args.command == "info":
        return _info(args)
    if args.command == "check":
        return _check(args)
    parser.print_help(sys.stderr)
    return 2

"""Fetch MedMNIST files from their official URLs, resumably and md5-checked.

The bytes go to ``FILE.part``; an interrupted transfer leaves it there and the next call asks
the server for the rest with an HTTP ``Range`` header. Only a file whose md5 matches the one
``medmnist.INFO`` publishes is moved into place (``os.replace``, atomic on one filesystem), so
``FILE`` is either absent or complete. Used by ``dino-mx data download`` (dino_mx/data/cli.py).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from http.client import HTTPException, HTTPResponse
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm import tqdm

from dino_mx.data.medmnist import medmnist_file

CHUNK = 1 << 20  # bytes read per call; also the progress bar's step


class DownloadError(RuntimeError):
    """A download failed: host unreachable, transfer cut, HTTP error or wrong md5.

    The message is one line that says what to do next.
    """


def file_md5(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex md5 of a file, read in chunks (the 224 px files reach 13 GB)."""
    digest = hashlib.md5()
    _hash_into(Path(path), digest, chunk)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float) -> HTTPResponse:
    """GET ``url``, from byte ``offset`` on when it is positive."""
    request = urllib.request.Request(url, headers={"User-Agent": "dino-mx"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _reason(err: BaseException) -> str:
    return str(err) or type(err).__name__


def _unreachable(url: str, dest: Path, reason: object) -> DownloadError:
    host = urlsplit(url).hostname
    return DownloadError(
        f"could not reach {host} ({reason}): download {url} on a connected machine and copy "
        f"{dest.name} into {dest.parent.resolve()}"
    )


def download_file(
    url: str, dest: str | Path, md5: str, timeout: float = 30.0, progress: bool | None = None
) -> bool:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming it, and check its md5.

    Args:
        url: http(s) URL of the file.
        dest: Final path; its folder is created if missing.
        md5: Expected hex md5 of the whole file.
        timeout: Seconds to wait for the connection and for each read.
        progress: Show a tqdm bar; None shows it only on a terminal.

    Returns:
        True when the file was downloaded, False when ``dest`` was already there with the
        right md5 (nothing is fetched).

    Raises:
        DownloadError: The host could not be reached, the transfer was cut (the ``.part``
            stays for the next call to resume), the server answered an HTTP error, ``dest``
            exists with another md5 (it is left alone), or the downloaded bytes have the wrong
            md5 (the ``.part`` is deleted).
    """
    dest = Path(dest)
    if _already_there(dest, md5):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    response = _connect(url, dest, offset, timeout)
    digest = _fetch(response, url, part, offset, progress)
    found = digest.hexdigest()
    if found != md5:
        part.unlink()
        raise DownloadError(
            f"md5 mismatch for {dest.name}: expected {md5}, got {found}; the partial file "
            f"{part.name} was deleted, run the command again to download afresh"
        )
    os.replace(part, dest)
    return True


def _already_there(dest: Path, md5: str) -> bool:
    """True when ``dest`` holds the official file, so nothing is fetched; a ``dest`` with
    another md5 is someone's file: it is left alone and the download refused."""
    if not dest.is_file():
        return False
    found = file_md5(dest)
    if found == md5:
        return True
    raise DownloadError(
        f"{dest} exists but its md5 is {found}, expected {md5}; move or delete it to "
        "download the official file"
    )


def _connect(url: str, dest: Path, offset: int, timeout: float) -> HTTPResponse | None:
    """The server's answer to a GET of ``url`` from byte ``offset``, or None when the
    ``.part`` already holds every byte (HTTP 416 to a ranged request): each failure to
    connect becomes one :class:`DownloadError` line saying what to do."""
    try:
        return _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code != 416 or not offset:
            raise DownloadError(
                f"{url}: the server answered HTTP {err.code} {err.reason}"
            ) from None
        # Range not satisfiable: the .part already holds the whole file (or more, if the
        # file changed upstream). The md5 check decides; a bad part is deleted.
        return None
    except urllib.error.URLError as err:  # DNS, refused connection, connect timeout
        raise _unreachable(url, dest, err.reason) from None
    except (TimeoutError, ConnectionError) as err:  # connected, but no answer
        raise _unreachable(url, dest, _reason(err)) from None


def _fetch(
    response: HTTPResponse | None, url: str, part: Path, offset: int, progress: bool | None
) -> Any:
    """The md5 (a ``hashlib`` object) of the whole ``.part`` once ``response`` is received
    into it (None: the part is already whole). A transfer cut midway keeps the part, so the
    next call resumes it rather than starting again."""
    if response is None:
        digest = hashlib.md5()
        _hash_into(part, digest)
        return digest
    try:
        with response:
            return _receive(response, url, part, offset, progress)
    except (TimeoutError, ConnectionError, HTTPException) as err:
        size = part.stat().st_size if part.is_file() else 0
        raise DownloadError(
            f"transfer of {url} cut after {size} bytes ({_reason(err)}); "
            f"{part} is kept: run the same command again to resume"
        ) from None


def _hash_into(path: Path, digest: Any, chunk: int = CHUNK) -> None:
    """Feed the bytes of ``path`` to ``digest`` (a ``hashlib`` object)."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)


def _receive(
    response: HTTPResponse, url: str, part: Path, offset: int, progress: bool | None
) -> Any:
    """Append the response body to ``part`` (from ``offset``) and return the md5 so far.

    A 200 answer to a ranged request means the server ignores ranges: start over. A body
    shorter than its Content-Length raises ``ConnectionError`` with the ``.part`` kept.

    Returns:
        The ``hashlib.md5`` object fed with every byte of ``part``.
    """
    digest = hashlib.md5()
    if offset and response.status == 206:
        start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
        if start != str(offset):
            raise DownloadError(
                f"{url}: asked for bytes from {offset}, the server sent "
                f"{response.headers.get('Content-Range')!r}; delete {part} and retry"
            )
        _hash_into(part, digest)
        mode = "ab"
    else:
        offset, mode = 0, "wb"
    length = response.headers.get("Content-Length")
    remaining = int(length) if length is not None else None
    total = offset + remaining if remaining is not None else None
    received = 0
    with (
        open(part, mode) as f,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=None if progress is None else not progress,
        ) as bar,
    ):
        # read1 returns what has arrived, so a stalled transfer keeps the bytes it got.
        while block := response.read1(CHUNK):
            f.write(block)
            digest.update(block)
            received += len(block)
            bar.update(len(block))
    if remaining is not None and received < remaining:
        # http.client returns b"" when the peer closes early instead of raising.
        raise ConnectionError(f"connection closed with {remaining - received} bytes missing")
    return digest


def download_medmnist(
    flag: str, size: int = 28, root: str | Path = ".", timeout: float = 30.0
) -> tuple[Path, bool]:
    """Download one official 2-D MedMNIST file into ``root`` under its official name.

    Args:
        flag: 2-D MedMNIST flag, e.g. ``"pathmnist"``.
        size: 28, 64, 128 or 224.
        root: Folder for the file (``data.root`` of the configs).
        timeout: Seconds to wait for the connection and for each read.

    Returns:
        ``(path, downloaded)``: ``downloaded`` is False when a file with the right md5 was
        already there.

    Raises:
        ValueError: Unknown flag or size (the message lists the valid ones).
        DownloadError: See :func:`download_file`.
    """
    name, url, md5 = medmnist_file(flag, size)
    dest = Path(root).expanduser() / name
    return dest, download_file(url, dest, md5, timeout=timeout)

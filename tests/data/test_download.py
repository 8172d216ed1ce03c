"""download_file / download_medmnist against a local server (tests/data/conftest.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from medmnist import INFO

from dino_mx.data import DownloadError, NpzImageDataset, download_file, download_medmnist
from tests.http_server import FileServer, breastmnist_bytes, closed_port, serve

TIMEOUT = 2.0


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    with serve(breastmnist_bytes()) as server:
        yield server


def test_good_file_lands_with_its_md5(tmp_path: Path, file_server: FileServer) -> None:
    dest = tmp_path / "sub" / "breastmnist.npz"
    assert download_file(file_server.url, dest, file_server.md5, timeout=TIMEOUT, progress=False)
    assert dest.read_bytes() == file_server.payload
    assert not (tmp_path / "sub" / "breastmnist.npz.part").exists()
    assert file_server.ranges == [None]
    ds = NpzImageDataset(dest, "train")
    assert (len(ds), ds.num_classes, ds.task) == (5, 2, "binary-class")
    assert [ds[i][1] for i in range(5)] == [1, 0, 1, 1, 0]
    # Present with the right md5: nothing is fetched again.
    assert not download_file(file_server.url, dest, file_server.md5, timeout=TIMEOUT)
    assert file_server.ranges == [None]


def test_wrong_md5_moves_nothing(tmp_path: Path, file_server: FileServer) -> None:
    dest = tmp_path / "breastmnist.npz"
    wrong = "0" * 32
    with pytest.raises(DownloadError) as info:
        download_file(file_server.url, dest, wrong, timeout=TIMEOUT, progress=False)
    message = str(info.value)
    assert f"expected {wrong}, got {file_server.md5}" in message and "\n" not in message
    assert "breastmnist.npz.part was deleted" in message
    assert list(tmp_path.iterdir()) == []


def test_existing_file_with_other_md5_is_left_alone(
    tmp_path: Path, file_server: FileServer
) -> None:
    dest = tmp_path / "breastmnist.npz"
    dest.write_bytes(b"a user's own file")
    found = hashlib.md5(b"a user's own file").hexdigest()
    with pytest.raises(DownloadError, match=f"md5 is {found}, expected {file_server.md5}"):
        download_file(file_server.url, dest, file_server.md5, timeout=TIMEOUT)
    assert dest.read_bytes() == b"a user's own file" and file_server.ranges == []


def test_interrupted_transfer_resumes_with_range(tmp_path: Path, file_server: FileServer) -> None:
    dest = tmp_path / "breastmnist.npz"
    part = tmp_path / "breastmnist.npz.part"
    file_server.cut_after = 1000
    with pytest.raises(DownloadError, match=r"cut after 1000 bytes .* run the same command again"):
        download_file(file_server.url, dest, file_server.md5, timeout=TIMEOUT, progress=False)
    assert not dest.exists() and part.read_bytes() == file_server.payload[:1000]
    assert download_file(file_server.url, dest, file_server.md5, timeout=TIMEOUT, progress=False)
    assert file_server.ranges == [None, "bytes=1000-"]
    assert dest.read_bytes() == file_server.payload and not part.exists()


def test_stalled_transfer_times_out_and_keeps_part(tmp_path: Path, file_server: FileServer) -> None:
    dest = tmp_path / "breastmnist.npz"
    file_server.stall_after = 300
    with pytest.raises(DownloadError, match="cut after 300 bytes"):
        download_file(file_server.url, dest, file_server.md5, timeout=1.0, progress=False)
    assert (tmp_path / "breastmnist.npz.part").stat().st_size == 300
    assert download_file(file_server.url, dest, file_server.md5, timeout=TIMEOUT, progress=False)
    assert file_server.ranges == [None, "bytes=300-"] and dest.read_bytes() == file_server.payload


def test_server_ignoring_range_restarts(tmp_path: Path, file_server: FileServer) -> None:
    dest = tmp_path / "breastmnist.npz"
    (tmp_path / "breastmnist.npz.part").write_bytes(b"x" * 700)  # not even the right bytes
    file_server.ignore_range = True
    assert download_file(file_server.url, dest, file_server.md5, timeout=TIMEOUT, progress=False)
    assert file_server.ranges == ["bytes=700-"] and dest.read_bytes() == file_server.payload


def test_complete_part_answered_416_is_checked_and_kept(
    tmp_path: Path, file_server: FileServer
) -> None:
    dest = tmp_path / "breastmnist.npz"
    (tmp_path / "breastmnist.npz.part").write_bytes(file_server.payload)
    assert download_file(file_server.url, dest, file_server.md5, timeout=TIMEOUT, progress=False)
    assert file_server.ranges == [f"bytes={len(file_server.payload)}-"]
    assert dest.read_bytes() == file_server.payload


def test_http_error_is_one_line(tmp_path: Path, file_server: FileServer) -> None:
    file_server.status = 404
    with pytest.raises(DownloadError) as info:
        download_file(file_server.url, tmp_path / "f.npz", file_server.md5, timeout=TIMEOUT)
    assert str(info.value) == f"{file_server.url}: the server answered HTTP 404 Not Found"
    assert list(tmp_path.iterdir()) == []


def test_overlong_part_answered_416_is_deleted(tmp_path: Path, file_server: FileServer) -> None:
    file_server.payload = b"tiny"
    (tmp_path / "f.npz.part").write_bytes(b"12345678")  # longer than the file: 416, bad md5
    with pytest.raises(DownloadError, match="md5 mismatch for f.npz"):
        download_file(file_server.url, tmp_path / "f.npz", file_server.md5, timeout=TIMEOUT)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/breastmnist.npz"
    with pytest.raises(DownloadError) as info:
        download_file(url, tmp_path / "breastmnist.npz", "0" * 32, timeout=TIMEOUT)
    message = str(info.value)
    assert message.startswith("could not reach 127.0.0.1 (")
    assert f"download {url} on a connected machine and copy breastmnist.npz into " in message
    assert message.endswith(str(tmp_path.resolve())) and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_download_medmnist_uses_official_name_url_md5(
    tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(INFO["breastmnist"], "url_64", file_server.url)
    monkeypatch.setitem(INFO["breastmnist"], "MD5_64", file_server.md5)
    path, fetched = download_medmnist("breastmnist", 64, tmp_path, timeout=TIMEOUT)
    assert (path, fetched) == (tmp_path / "breastmnist_64.npz", True)
    with np.load(path) as npz:
        assert npz["train_labels"].dtype == np.uint8 and npz["test_labels"][:, 0].tolist() == [
            1,
            1,
            0,
        ]
    with pytest.raises(ValueError, match="valid flags: .*'breastmnist'"):
        download_medmnist("breastmnist3d", 28, tmp_path)

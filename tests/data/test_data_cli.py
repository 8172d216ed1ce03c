"""``dino-mx data download`` and ``dino-mx data info`` through the real dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from medmnist import INFO

from dino_mx.cli import main
from dino_mx.data import build_dataset
from tests.conftest import SHARED_DATA, make_config
from tests.http_server import FileServer, breastmnist_bytes, closed_port, serve


@pytest.fixture
def breastmnist_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    """The official BreastMNIST 28 px URL and md5 pointed at a local server."""
    with serve(breastmnist_bytes()) as server:
        monkeypatch.setitem(INFO["breastmnist"], "url", server.url)
        monkeypatch.setitem(INFO["breastmnist"], "MD5", server.md5)
        yield server


def test_download_then_train_config_finds_it(
    tmp_path: Path, breastmnist_server: FileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "medmnist"
    assert main(["data", "download", "breastmnist", "--root", str(root)]) == 0
    assert capsys.readouterr().out == f"{root / 'breastmnist.npz'}: downloaded, md5 ok\n"
    cfg = make_config("data=medmnist", "data.flag=breastmnist", f"data.root={root}")
    ds = build_dataset(cfg.data, "test")
    assert (len(ds), ds.num_classes, ds.task) == (3, 2, "binary-class")
    assert [ds[i][1] for i in range(3)] == [1, 1, 0]
    assert main(["data", "download", "breastmnist", "--root", str(root)]) == 0
    assert capsys.readouterr().out.endswith("already there, md5 ok\n")
    assert breastmnist_server.ranges == [None]


def test_download_all_every_2d_flag(
    tmp_path: Path,
    breastmnist_server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = sorted(f for f in INFO if "3d" not in f)
    assert len(flags) == 12
    for flag in flags:
        monkeypatch.setitem(INFO[flag], "url_64", breastmnist_server.url)
        monkeypatch.setitem(INFO[flag], "MD5_64", breastmnist_server.md5)
    assert main(["data", "download", "--all", "--size", "64", "--root", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{f}_64.npz" for f in flags]
    assert len(capsys.readouterr().out.splitlines()) == 12
    # A failure stops the loop with status 1; files already in place are skipped on a rerun.
    (tmp_path / "organamnist_64.npz").unlink()
    monkeypatch.setitem(INFO["organamnist"], "MD5_64", "0" * 32)
    assert main(["data", "download", "--all", "--size", "64", "--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("already there") == 5  # blood, breast, chest, derma, oct
    assert "md5 mismatch for organamnist_64.npz" in captured.err
    assert len(breastmnist_server.ranges) == 13


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "download", "pathmnistt", "--root", str(tmp_path)]) == 2
    err = _one_line_error(capsys)
    assert "unknown 2-D MedMNIST flag 'pathmnistt'" in err and "'pathmnist'" in err
    assert "'organsmnist'" in err and "3d" not in err
    assert main(["data", "download", "pathmnist", "--size", "32"]) == 2
    assert "--size must be one of 28, 64, 128, 224, got 32" in _one_line_error(capsys)
    assert main(["data", "download"]) == 2
    assert "give one MedMNIST flag or --all" in _one_line_error(capsys)
    assert main(["data", "info", str(tmp_path / "missing.npz")]) == 2
    assert f"no such file: {tmp_path / 'missing.npz'}" in _one_line_error(capsys)
    (tmp_path / "text.npz").write_text("not a zip")
    assert main(["data", "info", str(tmp_path / "text.npz")]) == 2
    assert f"{tmp_path / 'text.npz'}: not an .npz archive" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == [tmp_path / "text.npz"]


def test_network_and_md5_failures_exit_1(
    tmp_path: Path,
    breastmnist_server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(INFO["breastmnist"], "MD5", "f" * 32)
    assert main(["data", "download", "breastmnist", "--root", str(tmp_path)]) == 1
    err = _one_line_error(capsys)
    assert f"expected {'f' * 32}, got {breastmnist_server.md5}" in err
    url = f"http://127.0.0.1:{closed_port()}/breastmnist.npz?download=1"
    monkeypatch.setitem(INFO["breastmnist"], "url", url)
    assert main(["data", "download", "breastmnist", "--root", str(tmp_path)]) == 1
    err = _one_line_error(capsys)
    assert err.startswith("dino-mx data: error: could not reach 127.0.0.1")
    assert f"copy breastmnist.npz into {tmp_path.resolve()}" in err
    assert list(tmp_path.iterdir()) == []


def test_info_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Known counts of a file written here: ChestMNIST-named, multi-label, uint8 labels."""
    labels = np.zeros((4, 14), dtype=np.uint8)
    labels[:, 0] = 1  # atelectasis in all four
    labels[1, 13] = labels[2, 13] = 1  # hernia in two
    np.savez(
        tmp_path / "chestmnist_64.npz",
        train_images=np.zeros((4, 64, 64), dtype=np.uint8),
        train_labels=labels,
        val_images=np.zeros((1, 64, 64), dtype=np.uint8),
        val_labels=labels[:1],
    )
    assert main(["data", "info", str(tmp_path / "chestmnist_64.npz"), "--no-md5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[1] == "MedMNIST chestmnist at 64 px: multi-label, binary-class, 14 labels, 1 channel(s)"
    )
    assert out[3] == "  train: 4 images (MedMNIST has 78468), uint8 (4, 64, 64)"
    assert out[4] == "    labels uint8 (4, 14)"
    assert out[5].startswith("    positives per label: 0 atelectasis: 4, 1 cardiomegaly: 0, ")
    assert out[5].endswith(", 13 hernia: 2")
    assert out[6].startswith("  val: 1 images") and out[8].endswith("13 hernia: 0")
    assert out[9] == "  test: absent"


def test_info_single_label_and_md5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.npz"
    labels = np.array([[2], [0], [2], [2], [0]], dtype=np.uint8)
    np.savez(path, train_images=np.zeros((5, 8, 8, 3), np.uint8), train_labels=labels)
    assert main(["data", "info", str(path)]) == 0
    from dino_mx.data.download import file_md5

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"mine.npz: {path.stat().st_size / 1e6:.1f} MB, md5 {file_md5(path)}"
    assert out[2:5] == [
        "  train: 5 images, uint8 (5, 8, 8, 3)",
        "    labels uint8 (5, 1)",
        "    classes: 0: 2, 2: 3",
    ]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_info_on_shared_files(capsys: pytest.CaptureFixture[str]) -> None:
    """Known answers from ../shared/data/README.md."""
    files = [SHARED_DATA / "pneumoniamnist.npz", SHARED_DATA / "bccd_roi_128.npz"]
    assert main(["data", "info", *map(str, files)]) == 0
    out = capsys.readouterr().out
    # The rebuilt PneumoniaMNIST: official counts, a different md5 than the official file.
    assert (
        "md5 e608d502c55a1f5812dfe8680d8b4154 (official: 28209eda62fecd6e6a2d98b1501bb15f)" in out
    )
    assert "  train: 4708 images, uint8 (4708, 28, 28)" in out
    assert "classes: 0 normal: 1214, 1 pneumonia: 3494" in out
    assert "classes: 0 normal: 234, 1 pneumonia: 390" in out
    # The roi layout: arrays and split counts, no crash.
    assert "layout: not MedMNIST (no {split}_images keys); 9 arrays" in out
    assert "  boxes: float32 (4886, 4)" in out and "images per split: train 290, test 74" in out


def test_dispatcher_lists_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"]) == 2
    assert "valid choices: train, eval, export, visualize, demo, data" in capsys.readouterr().err

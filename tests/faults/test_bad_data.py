"""Fault injection, bad data (issue 16): a corrupt ``.npz``, unreadable images under
``data.on_bad_image=raise|skip``, and ``dino-mx data check``.

Every corrupt file is made from one written the way its tool writes it: the bundled
PneumoniaMNIST file (``np.savez``, as MedMNIST ships it), PNGs saved by PIL, a TIFF written by
tifffile.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hydra.errors import ConfigCompositionException
from PIL import Image
from torch.utils.data import DataLoader

from dino_mx.cli import main
from dino_mx.data import ImageFolderDataset, build_dataset, load_roi_npz
from dino_mx.data.medmnist import bundled_pneumoniamnist_path
from dino_mx.data.npz import NpzImageDataset
from dino_mx.data.summary import describe_npz
from dino_mx.errors import one_line
from dino_mx.train import train
from tests.conftest import make_config

TRUNCATED = (
    "{path}: truncated or damaged .npz archive (its zip directory cannot be read: File is not "
    "a zip file); re-download or re-write it"
)
NOT_ZIP = (
    "{path}: not an .npz archive (np.savez writes a zip file; this file does not start like one)"
)


def _truncated_npz(folder: Path) -> Path:
    """The first half of the real PneumoniaMNIST file: a download cut short."""
    data = bundled_pneumoniamnist_path().read_bytes()
    path = folder / "pneumoniamnist_cut.npz"
    path.write_bytes(data[: len(data) // 2])
    return path


def _random_npz(folder: Path) -> Path:
    path = folder / "random.npz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


@pytest.fixture(params=["truncated", "random"])
def corrupt_npz(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """A corrupt ``.npz`` and the one line every reader must give for it."""
    if request.param == "truncated":
        path = _truncated_npz(tmp_path)
        return path, TRUNCATED.format(path=path)
    path = _random_npz(tmp_path)
    return path, NOT_ZIP.format(path=path)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


def test_corrupt_npz_names_its_path_in_every_reader(corrupt_npz: tuple[Path, str]) -> None:
    path, line = corrupt_npz
    for read in (
        lambda: NpzImageDataset(path, "train"),
        lambda: load_roi_npz(path, "train"),
        lambda: describe_npz(path, md5=False),
        lambda: build_dataset(
            make_config("data=npz", f"data.root={path.parent}", f"data.file={path.name}").data
        ),
    ):
        with pytest.raises(ValueError) as info:
            read()
        assert str(info.value) == line


def test_corrupt_npz_is_one_line_from_the_commands(
    corrupt_npz: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, line = corrupt_npz
    assert main(["data", "info", str(path)]) == 2
    assert _one_line_error(capsys) == f"dino-mx data: error: {line}"
    assert main(["data", "check", str(path)]) == 1
    reason = line.removeprefix(f"{path}: ")
    assert capsys.readouterr().out == f"{path}: {reason}\n{path}: 1 file(s) checked, 1 unreadable\n"


def test_train_on_a_truncated_npz_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _truncated_npz(tmp_path)
    run = tmp_path / "run"
    status = main(
        [
            "train",
            "+experiment=smoke",
            "data=npz",
            f"data.root={tmp_path}",
            f"data.file={path.name}",
            f"paths.output_dir={run}",
            "trainer.progress=false",
        ]
    )
    assert status == 2
    assert _one_line_error(capsys) == f"dino-mx train: error: {TRUNCATED.format(path=path)}"


# --- unreadable images ------------------------------------------------------------------------


def _png(path: Path, value: int, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def _truncated_png(path: Path) -> Path:
    """A real noise PNG cut in half: the header reads, the pixels do not."""
    rng = np.random.default_rng(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _image_folder(root: Path) -> tuple[list[Path], Path]:
    """Class folders a/ and b/ of 32 px RGB PNGs with one truncated PNG, a/c_bad.png (sorted
    third of five); each good image's pixels are 10 * its index."""
    good = [_png(root / "a" / "a0.png", 0), _png(root / "a" / "b1.png", 10)]
    bad = _truncated_png(root / "a" / "c_bad.png")
    good += [_png(root / "b" / "d3.png", 30), _png(root / "b" / "e4.png", 40)]
    return good, bad


def test_corrupt_png_raise_names_the_file(tmp_path: Path) -> None:
    _, bad = _image_folder(tmp_path)
    cfg = make_config("data=imagefolder", f"data.root={tmp_path}").data
    assert cfg.on_bad_image == "raise"  # the default
    dataset = build_dataset(cfg)
    assert dataset[1][0][0, 0, 0].item() == 10
    with pytest.raises(OSError) as info:
        dataset[2]
    assert str(info.value) == (
        f"cannot read image {bad}: image file is truncated; data.on_bad_image=skip skips such "
        f"files, `dino-mx data check {tmp_path}` lists them all"
    )


def test_corrupt_png_skip_replaces_it_logs_once_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = _image_folder(tmp_path)
    cfg = make_config("data=imagefolder", f"data.root={tmp_path}", "data.on_bad_image=skip").data
    dataset = build_dataset(cfg)
    caplog.set_level(logging.WARNING, logger="dino_mx.data.bad_image")
    for _ in range(3):  # three epochs: the bad file is met three times, logged once
        batches = list(DataLoader(dataset, batch_size=5, num_workers=0))
        images, labels = batches[0]
        # Index 2 (unreadable) gets index 3's image and label: the next readable one.
        assert images[:, 0, 0, 0].tolist() == [0, 10, 30, 30, 40]
        assert labels.tolist() == [0, 0, 1, 1, 1]
    warnings = [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    assert warnings == [
        "skipping unreadable image (data.on_bad_image=skip, 1 so far in this process): "
        f"cannot read image {bad}: image file is truncated"
    ]
    assert dataset.bad_images.count == 1 and dataset.bad_images.skipped == 3
    assert list(dataset.bad_images.paths) == [str(bad)]


def test_skip_when_the_first_image_is_bad_and_when_all_are(tmp_path: Path) -> None:
    bad = _truncated_png(tmp_path / "a" / "a_bad.png")
    _png(tmp_path / "a" / "b.png", 70)
    with pytest.raises(OSError, match="a_bad.png: image file is truncated"):
        ImageFolderDataset(tmp_path)[0]
    dataset = ImageFolderDataset(tmp_path, on_bad_image="skip")
    assert dataset.channels == 3 and dataset[0][0][0, 0, 0].item() == 70
    (tmp_path / "a" / "b.png").write_text("not an image")
    with pytest.raises(OSError, match=r"none of the 2 images is readable .*a_bad.png"):
        ImageFolderDataset(tmp_path, on_bad_image="skip")[0]
    assert bad.is_file()


def test_unknown_on_bad_image_names_the_key(tmp_path: Path) -> None:
    _image_folder(tmp_path)
    with pytest.raises(ConfigCompositionException) as info:  # a closed choice of the schema
        make_config("data=imagefolder", f"data.root={tmp_path}", "data.on_bad_image=ignore")
    assert one_line(info.value) == "data.on_bad_image=ignore: valid choices: raise, skip"


def test_coco_skip_gives_the_stand_in_its_own_regions(tmp_path: Path) -> None:
    _png(tmp_path / "x.png", 50, size=20)
    _truncated_png(tmp_path / "y.png")
    coco = {
        "images": [
            {"id": 1, "file_name": "y.png", "width": 64, "height": 64},
            {"id": 2, "file_name": "x.png", "width": 20, "height": 20, "label": 1},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "bbox": [0, 0, 60, 60], "category_id": 1},
            {"id": 2, "image_id": 2, "bbox": [2, 3, 4, 5], "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (tmp_path / "train.json").write_text(json.dumps(coco))
    coco_data = ("data=bccd_roi", "data.format=coco", f"data.root={tmp_path}", "data.file=.")
    with pytest.raises(OSError, match="y.png: image file is truncated"):
        build_dataset(make_config(*coco_data).data)[0]
    dataset = build_dataset(make_config(*coco_data, "data.on_bad_image=skip").data)
    image, label = dataset[0]
    assert image.shape == (3, 20, 20) and label == 1
    assert dataset.regions(0).boxes.tolist() == [[2, 3, 6, 8]]  # x.png's box, not y.png's
    assert dataset.regions(1).boxes.tolist() == [[2, 3, 6, 8]]


@pytest.mark.slow
def test_training_continues_past_a_corrupt_png_under_skip(
    tmp_path: Path, smoke_config, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "images"
    _, bad = _image_folder(data)
    run = tmp_path / "run"
    overrides = ("data=imagefolder", f"data.root={data}", "data.num_workers=0")
    caplog.set_level(logging.WARNING, logger="dino_mx.data.bad_image")
    with pytest.raises(OSError, match="c_bad.png: image file is truncated"):
        train(smoke_config(run, *overrides), run)
    shutil.rmtree(run)
    last = train(smoke_config(run, *overrides, "data.on_bad_image=skip"), run)
    assert last["step"] == 3 and np.isfinite(last["loss"])  # 4 steps of 8 from 5 images
    warnings = [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()]
    assert len(warnings) == 1 and "1 so far in this process" in warnings[0]


# --- dino-mx data check -----------------------------------------------------------------------


def test_data_check_lists_each_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "scans"
    _png(root / "a" / "good1.png", 10)
    _png(root / "a" / "good2.png", 20)
    truncated = _truncated_png(root / "a" / "truncated.png")
    renamed = root / "b" / "notes.png"
    renamed.parent.mkdir(parents=True)
    renamed.write_text("reader notes, not an image\n")
    tiff = root / "b" / "stack.tif"
    tifffile.imwrite(tiff, np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    good_tiff = root / "b" / "good.tif"
    shutil.copy(tiff, good_tiff)
    data = tiff.read_bytes()
    tiff.write_bytes(data[:8] + b"\xff" * (len(data) - 8))  # header kept, directory garbled
    (root / "b" / "README.txt").write_text("not checked")

    assert main(["data", "check", str(root)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{truncated}: cannot decode (OSError: image file is truncated)",
        f"{renamed}: cannot decode (UnidentifiedImageError: cannot identify image file)",
        f"{tiff}: cannot decode (TiffFileError: suspicious number of tags 65535)",
        f"{root}: 6 file(s) checked, 3 unreadable",
    ]
    for path in (truncated, renamed, tiff):
        path.unlink()
    assert main(["data", "check", str(root)]) == 0
    assert capsys.readouterr().out == f"{root}: 3 file(s) checked, 0 unreadable\n"
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert (
        _one_line_error(capsys)
        == f"dino-mx data: error: no such file or folder: {tmp_path / 'nowhere'}"
    )

"""``dino-mx eval knn|linear`` end to end: a trained run, baselines, JSON output, errors."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from dino_mx.cli import main as dino_mx_main
from dino_mx.eval.cli import evaluate_knn, evaluate_linear, main
from dino_mx.eval.network import NetworkSpec
from tests.eval.conftest import TINY, train_tiny_run

RECORD_KEYS = {
    "eval",
    "network",
    "which",
    "checkpoint",
    "step",
    "model",
    "tokens",
    "data",
    "task",
    "split",
    "n_train",
    "n_eval",
    "feature_dim",
    "metrics",
}
METRIC_KEYS = {"accuracy", "balanced_accuracy", "macro_f1"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("train") / "run")


def write_toy_npz(path: Path, multilabel: bool = False, seed: int = 0) -> list[str]:
    """Grey 16 px images, class 0 bright on top, class 1 bright below, plus noise; returns the
    CLI options that evaluate it through the ``bloodcells`` (npz) data group."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 20), ("val", 8), ("test", 8)):
        labels = np.arange(2 * n) % 2  # (2n,)
        images = rng.integers(0, 60, size=(2 * n, 16, 16))
        images[labels == 0, :8] += 180
        images[labels == 1, 8:] += 180
        arrays[f"{split}_images"] = images.astype(np.uint8)
        y = np.stack([labels, 1 - labels, labels], 1) if multilabel else labels[:, None]
        arrays[f"{split}_labels"] = y.astype(np.int64)
    np.savez(path, **arrays)
    return [
        "--data",
        "bloodcells",
        "--data-root",
        str(path.parent),
        "--override",
        f"data.file={path.name}",
        "--override",
        "data.name=toy",
        "--override",
        "data.mean=[0.5]",
        "--override",
        "data.std=[0.5]",
    ]


def test_knn_on_a_run_writes_json_and_reuses_features(
    run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "knn.json"
    assert (
        dino_mx_main(["eval", "knn", "--ckpt", str(run), "--k", "5", "20", "--json", str(out)]) == 0
    )
    table = capsys.readouterr().out
    assert "teacher, step 2" in table and "binary-class" in table and "k=20" in table
    assert table.splitlines()[1].split() == [
        "k",
        "accuracy",
        "auc",
        "balanced_accuracy",
        "macro_f1",
    ]
    result = json.loads(out.read_text())
    assert RECORD_KEYS | {"temperature"} <= result.keys()
    assert (result["network"], result["step"], result["tokens"], result["split"]) == (
        "teacher",
        2,
        "cls",
        "test",
    )
    assert result["data"] == {"name": "pneumoniamnist", "size": 28, "image_size": 28}
    assert result["task"] == "binary-class"
    assert (result["n_train"], result["n_eval"], result["feature_dim"]) == (4708, 624, 24)
    assert set(result["metrics"]) == {"5", "20"}
    assert METRIC_KEYS | {"auc"} == result["metrics"]["5"].keys()
    assert json.loads((run / "eval" / "knn.json").read_text()) == result

    with caplog.at_level(logging.INFO, logger="dino_mx.eval.features"):
        again = evaluate_knn(NetworkSpec(run), ks=(5, 20))
    assert caplog.text.count("features: cache hit") == 2  # train and test
    assert again["metrics"] == result["metrics"]


@pytest.mark.slow
def test_linear_on_a_run_student(run: Path) -> None:
    assert main(["linear", "--ckpt", str(run), "--which", "student", "--cs", "0.1", "1"]) == 0
    result = json.loads((run / "eval" / "linear_student.json").read_text())
    assert RECORD_KEYS | {"best_c", "sweep", "val", "test", "select"} <= result.keys()
    assert result["select"] == "accuracy" and result["test"]["auc"] > 0.5
    assert (result["which"], result["tokens"], result["feature_dim"]) == ("student", "cls+mean", 48)
    assert result["best_c"] in (0.1, 1.0) and [p["c"] for p in result["sweep"]] == [0.1, 1.0]
    assert result["metrics"] == result["test"] and METRIC_KEYS <= result["val"].keys()
    assert result["test"]["accuracy"] > 0.7  # majority class: 0.625


@pytest.mark.parametrize("command", ["knn", "linear"])
def test_pixels_baseline_separates_toy_classes(tmp_path: Path, command: str) -> None:
    options = write_toy_npz(tmp_path / "toy.npz")
    out = tmp_path / "pixels.json"
    extra = ["--k", "5", "10"] if command == "knn" else ["--cs", "1"]
    assert main([command, "--baseline", "pixels", *options, *extra, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert RECORD_KEYS <= result.keys()
    assert (result["network"], result["step"], result["model"]) == ("pixels", None, None)
    assert result["data"]["name"] == "toy" and result["feature_dim"] == 28 * 28  # resized
    assert (result["n_train"], result["n_eval"]) == (40, 16)
    metrics = result["metrics"].values() if command == "knn" else [result["test"], result["val"]]
    assert all(m["accuracy"] == 1.0 and m["auc"] == 1.0 for m in metrics)
    assert not (tmp_path / "eval").exists()  # no run dir, no --cache-dir: nothing cached


def test_model_preset_baseline_works_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "cache"
    argv = [
        "knn",
        "--model",
        "vit_micro",
        *[a for o in TINY for a in ("--override", o)],
        "--k",
        "10",
        "--cache-dir",
        str(cache),
        "--json",
        str(tmp_path / "m.json"),
    ]
    assert main(argv) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert (result["network"], result["model"], result["feature_dim"]) == (
        "model:vit_micro",
        "vit_micro",
        24,
    )
    assert result["data"]["name"] == "pneumoniamnist" and result["n_eval"] == 624
    assert not math.isnan(result["metrics"]["10"]["accuracy"])
    assert len(list(cache.glob("*.pt"))) == 2
    assert main(argv) == 0  # seeded random init: the cached features stay valid
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == result["metrics"]


def test_other_data_and_splits_do_not_overwrite_the_runs_results(run: Path, tmp_path: Path) -> None:
    own = evaluate_knn(NetworkSpec(run), ks=(5,))
    options = write_toy_npz(tmp_path / "toy.npz")
    options += ["--override", "data.size=28"]  # the run's size: the name shows only the data
    assert main(["knn", "--ckpt", str(run), *options, "--k", "5"]) == 0
    assert main(["knn", "--ckpt", str(run), "--split", "val", "--k", "5"]) == 0
    other = json.loads((run / "eval" / "knn@toy.json").read_text())
    val = json.loads((run / "eval" / "knn_val.json").read_text())
    assert (other["data"]["name"], other["n_eval"], val["split"]) == ("toy", 16, "val")
    assert json.loads((run / "eval" / "knn.json").read_text())["metrics"] == own["metrics"]


@pytest.mark.parametrize("command", ["knn", "linear"])
def test_multilabel_toy_data(tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    options = write_toy_npz(tmp_path / "multi.npz", multilabel=True)
    extra = ["--k", "5"] if command == "knn" else ["--cs", "1"]
    out = tmp_path / "multi.json"
    assert main([command, "--baseline", "pixels", *options, *extra, "--json", str(out)]) == 0
    assert "multi-label, binary-class" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["task"] == "multi-label, binary-class"
    metrics = result["metrics"]["5"] if command == "knn" else result["test"]
    assert metrics == {"accuracy": 1.0, "macro_f1": 1.0, "auc": 1.0}  # the toy is separable


def write_chestmnist(root: Path, seed: int = 0) -> None:
    """``chestmnist.npz`` as MedMNIST writes it (uint8 images (N, 28, 28), uint8 labels
    (N, 14)): finding l brightens its own 4 x 14 block of the image."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 60), ("val", 20), ("test", 30)):
        labels = (rng.random((n, 14)) < 0.3).astype(np.uint8)
        images = rng.integers(0, 50, size=(n, 28, 28))
        for i, label in zip(*labels.nonzero(), strict=True):
            row, col = divmod(int(label), 7)
            images[i, 14 * row : 14 * row + 14, 4 * col : 4 * col + 4] += 150
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images.astype(np.uint8), labels
    np.savez(root / "chestmnist.npz", **arrays)


def test_chestmnist_layout_end_to_end(tmp_path: Path) -> None:
    write_chestmnist(tmp_path)
    overrides = ["data.flag=chestmnist", f"data.root={tmp_path}"]
    pixels = NetworkSpec(baseline="pixels", data="medmnist", overrides=overrides)
    knn = evaluate_knn(pixels, ks=(10,))
    linear = evaluate_linear(pixels, cs=(0.1, 1.0))
    for result in (knn, linear):
        assert (result["task"], result["data"]["name"]) == (
            "multi-label, binary-class",
            "chestmnist",
        )
        assert (result["n_train"], result["n_eval"], result["feature_dim"]) == (60, 30, 784)
    assert knn["metrics"]["10"]["auc"] > 0.7 and knn["metrics"]["10"]["accuracy"] > 0.7
    assert linear["select"] == "auc" and linear["best_c"] in (0.1, 1.0)
    assert linear["test"]["auc"] > 0.9 and linear["test"]["accuracy"] > 0.8


def test_usage_errors(run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["knn", "--ckpt", str(run), "--model", "vit_micro"]) == 2  # argparse
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["knn", "--ckpt", str(run), "--override", "data.sizee=64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dino-mx eval: error: unknown key data.sizee; valid keys of data: ")
    assert err.count("\n") == 1
    assert main(["knn", "--ckpt", str(run), "--override", "model.depth=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dino-mx eval: error: ") and "fixes the model" in err
    assert err.count("\n") == 1

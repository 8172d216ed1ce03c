"""Result file names under RUN/eval/, strict JSON, and the printed table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dino_mx.eval.results import format_result, result_name, write_result

OWN = {"name": "pneumoniamnist", "size": 28}


def _result(**changes: object) -> dict:
    result = {
        "eval": "knn",
        "network": "teacher",
        "which": "teacher",
        "step": 2,
        "tokens": "cls",
        "data": {"name": "pneumoniamnist", "size": 28, "image_size": 28},
        "task": "binary-class",
        "split": "test",
        "n_train": 10,
        "n_eval": 4,
        "feature_dim": 24,
        "temperature": 0.07,
        "metrics": {"5": {"accuracy": 0.75, "auc": math.nan, "macro_f1": 0.5}},
    }
    return result | changes


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "knn.json"),
        ({"eval": "linear"}, "linear.json"),
        ({"split": "val"}, "knn_val.json"),
        ({"which": "student"}, "knn_student.json"),
        ({"data": {"name": "bloodcells", "size": 28}}, "knn@bloodcells.json"),
        ({"data": {"name": "pneumoniamnist", "size": 64}}, "knn@pneumoniamnist-64px.json"),
        (
            {"data": {"name": "chestmnist", "size": 64}, "which": "student", "split": "val"},
            "knn@chestmnist-64px_student_val.json",
        ),
        ({"which": None}, "knn.json"),  # a baseline has no teacher/student
    ],
)
def test_result_name(changes: dict, expected: str) -> None:
    assert result_name(_result(**changes), OWN) == expected


def test_without_training_data_the_data_is_the_runs_own() -> None:
    assert result_name(_result(data={"name": "x", "size": 1}), None) == "knn.json"


def test_write_result_keeps_each_evaluation(tmp_path: Path) -> None:
    own, other = _result(), _result(data={"name": "bloodcells", "size": 28, "image_size": 28})
    write_result(own, tmp_path, tmp_path / "copy.json", OWN)
    write_result(other, tmp_path, None, OWN)
    write_result(_result(split="val"), tmp_path, None, OWN)
    names = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert names == ["knn.json", "knn@bloodcells.json", "knn_val.json"]
    saved = json.loads((tmp_path / "eval" / "knn.json").read_text())
    assert saved["metrics"]["5"]["auc"] is None  # NaN -> null: strict JSON
    assert saved == json.loads((tmp_path / "copy.json").read_text())


def test_table_puts_auc_next_to_accuracy_and_nan_as_dash() -> None:
    text = format_result(_result())
    head, header, row = text.splitlines()
    assert "binary-class" in head and head.endswith("T=0.07")
    assert header.split() == ["k", "accuracy", "auc", "macro_f1"]
    assert row.split() == ["k=5", "0.7500", "-", "0.5000"]


def test_linear_table_names_the_selection_metric() -> None:
    result = _result(
        eval="linear",
        select="auc",
        best_c=0.1,
        sweep=[
            {"c": 0.1, "val_accuracy": 0.9, "val_auc": 0.8},
            {"c": 1.0, "val_accuracy": 0.95, "val_auc": math.nan},
        ],
        val={"accuracy": 0.9, "auc": 0.8},
        test={"accuracy": 0.85, "auc": 0.75},
    )
    lines = format_result(result).splitlines()
    assert lines[1] == "val auc per C: C=0.1: 0.8000  C=1: -"
    assert lines[2] == "best C = 0.1"
    assert lines[4].split() == ["val", "0.9000", "0.8000"]

"""Metrics on hand-counted examples and against MedMNIST's own ``getACC`` / ``getAUC``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score

from dino_mx.data.tasks import BINARY, MULTICLASS, MULTILABEL, ORDINAL, TASKS
from dino_mx.eval.metrics import (
    as_class_labels,
    as_multilabel_targets,
    classification_metrics,
    infer_task,
    multilabel_metrics,
    task_metrics,
)


def _medmnist_auc(y_true: np.ndarray, y_score: np.ndarray, task: str) -> float:
    """MedMNIST's getAUC, NaN where scikit-learn raises (older) or warns (>= 1.6) on a class
    without positives."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        try:
            return float(getAUC(y_true, y_score, task))
        except ValueError:
            return math.nan


def test_task_names_are_medmnists() -> None:
    from medmnist import INFO

    assert {info["task"] for flag, info in INFO.items() if "3d" not in flag} == set(TASKS)


def test_hand_counted_multiclass() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 2, 0])
    m = classification_metrics(y_true, y_pred)
    assert set(m) == {"accuracy", "balanced_accuracy", "macro_f1"}
    assert all(type(v) is float for v in m.values())
    assert m["accuracy"] == pytest.approx(6 / 8)
    # Per-class recall 3/4, 2/2, 1/2.
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    # Class 0: P=3/4, R=3/4 -> F1=3/4; class 1: P=2/3, R=1 -> 4/5; class 2: P=1, R=1/2 -> 2/3.
    assert m["macro_f1"] == pytest.approx((3 / 4 + 4 / 5 + 2 / 3) / 3)


def test_hand_computed_multiclass_auc() -> None:
    y_true = np.array([0, 1, 2, 0])
    score = np.array([[0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.4, 0.2, 0.4]])
    m = task_metrics(MULTICLASS, y_true, score)
    # One-vs-rest, counting positive-negative pairs ranked right (a tie counts 1/2):
    # class 0: pos {.5, .4} vs neg {.6, .2} -> 2/4; class 1: pos {.3} vs {.4, .3, .2} -> 1.5/3;
    # class 2: pos {.5} vs {.1, .1, .4} -> 1.
    assert m["auc"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert m["accuracy"] == pytest.approx(3 / 4)  # row 3 ties 0 / 2: arg-max takes class 0
    assert m["auc"] == pytest.approx(getAUC(y_true, score, MULTICLASS))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_absent_class_is_left_out_of_the_mean() -> None:
    y_true = np.array([0, 0, 1, 1])  # class 2 never occurs in this split
    score = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.4, 0.5, 0.1], [0.1, 0.6, 0.3]])
    assert math.isnan(_medmnist_auc(y_true, score, MULTICLASS))  # undefined for MedMNIST
    # class 0: pos {.7, .3} vs neg {.4, .1} -> 3/4; class 1: pos {.5, .6} vs {.2, .3} -> 1.
    assert task_metrics(MULTICLASS, y_true, score, num_classes=3)["auc"] == pytest.approx(0.875)
    assert math.isnan(task_metrics(MULTICLASS, np.zeros(4, int), score)["auc"])


@pytest.mark.parametrize("task", [MULTICLASS, ORDINAL])
def test_multiclass_and_ordinal_match_medmnist(task: str) -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, size=300)
    logits = rng.normal(size=(300, 5)) + 1.5 * np.eye(5)[y_true]  # informative, not perfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = task_metrics(task, y_true[:, None], torch.from_numpy(probs))
    expected_auc = getAUC(y_true[:, None], probs, task)
    assert 0.6 < expected_auc < 0.95
    assert m["auc"] == pytest.approx(expected_auc, abs=1e-12)
    assert m["accuracy"] == pytest.approx(getACC(y_true[:, None], probs, task), abs=1e-12)


def test_binary_matches_medmnist_and_sklearn() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, size=200)
    pos = np.clip(0.3 * y_true + rng.normal(0.35, 0.25, size=200), 0.0, 1.0)
    probs = np.stack([1 - pos, pos], axis=1)
    expected = roc_auc_score(y_true, pos)
    assert 0.6 < expected < 0.99  # a non-trivial AUC, so the comparison means something
    assert getAUC(y_true, probs, BINARY) == pytest.approx(expected, abs=1e-12)
    from_task = task_metrics(BINARY, y_true, probs)
    assert from_task["auc"] == pytest.approx(expected, abs=1e-12)
    assert from_task["accuracy"] == pytest.approx(getACC(y_true, probs, BINARY), abs=1e-12)
    from_probs = classification_metrics(y_true, (pos > 0.5).astype(int), probs)
    from_scores = classification_metrics(y_true, (pos > 0.5).astype(int), pos, num_classes=2)
    from_torch = classification_metrics(
        torch.from_numpy(y_true[:, None]),
        torch.from_numpy(probs.argmax(1)),
        torch.from_numpy(probs),
    )
    assert type(from_probs["auc"]) is float
    for m in (from_probs, from_scores, from_torch):
        assert m["auc"] == pytest.approx(expected, abs=1e-12)


def test_hand_computed_multilabel() -> None:
    y_true = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=np.uint8)
    score = np.array([[0.9, 0.2, 0.1], [0.4, 0.6, 0.2], [0.3, 0.7, 0.6], [0.6, 0.1, 0.3]])
    m = multilabel_metrics(y_true, score)
    # Label 0: pos {.9, .3} vs neg {.4, .6} -> AUC 2/4; predictions (> .5) 1 0 0 1 -> acc 2/4.
    # Label 1: pos {.6, .7} vs neg {.2, .1} -> AUC 1, acc 1. Label 2: never positive -> no AUC
    # (left out of the mean); predictions 0 0 1 0 -> acc 3/4.
    assert m["accuracy"] == pytest.approx((2 / 4 + 1 + 3 / 4) / 3)
    assert m["auc"] == pytest.approx((0.5 + 1.0) / 2)
    # F1: label 0 P=1/2 R=1/2 -> 1/2; label 1 -> 1; label 2 no positive, one false alarm -> 0.
    assert m["macro_f1"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert getACC(y_true, score, MULTILABEL) == pytest.approx(m["accuracy"])
    assert math.isnan(_medmnist_auc(y_true, score, MULTILABEL))
    assert getAUC(y_true[:, :2], score[:, :2], MULTILABEL) == pytest.approx(m["auc"])


def test_multilabel_matches_medmnist_on_random_scores() -> None:
    rng = np.random.default_rng(2)
    y_true = (rng.random((400, 14)) < 0.15).astype(np.uint8)  # ChestMNIST-like: rare findings
    score = 1 / (1 + np.exp(-(rng.normal(size=(400, 14)) + 1.2 * y_true - 1.5)))
    m = task_metrics(MULTILABEL, torch.from_numpy(y_true).float(), score)
    assert m["auc"] == pytest.approx(getAUC(y_true, score, MULTILABEL), abs=1e-12)
    assert m["accuracy"] == pytest.approx(getACC(y_true, score, MULTILABEL), abs=1e-12)
    assert 0.7 < m["auc"] < 0.95


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_binary_auc_without_scores_is_absent_and_single_class_is_nan() -> None:
    assert "auc" not in classification_metrics(np.array([0, 1]), np.array([0, 1]))
    m = classification_metrics(np.array([1, 1, 1]), np.array([1, 0, 1]), np.array([0.9, 0.2, 0.8]))
    assert math.isnan(m["auc"])


def test_infer_task() -> None:
    assert infer_task(np.zeros((5, 14))) == MULTILABEL
    assert infer_task(np.array([0, 1, 1])) == BINARY
    assert infer_task(np.array([[0], [2]])) == MULTICLASS
    assert infer_task(np.array([0, 1]), num_classes=4) == MULTICLASS


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match=r"y_true has shape \(4, 3\): multi-label"):
        classification_metrics(np.zeros((4, 3), dtype=int), np.zeros((4, 3), dtype=int))
    with pytest.raises(ValueError, match="lengths differ"):
        classification_metrics(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        classification_metrics(np.array([0, 2]), np.array([0, 1]), num_classes=2)
    with pytest.raises(ValueError, match="binary"):
        classification_metrics(np.array([0, 2]), np.array([0, 1]), np.array([0.1, 0.5]))
    with pytest.raises(ValueError, match="unknown task 'multiclass'; valid tasks: 'binary-class'"):
        task_metrics("multiclass", np.array([0, 1]), np.eye(2))
    with pytest.raises(ValueError, match="0/1 targets"):
        as_multilabel_targets(np.array([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="differs from y_true"):
        multilabel_metrics(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="empty"):
        as_class_labels(np.array([], dtype=int))
    with pytest.raises(ValueError, match="integer"):
        as_class_labels(np.array([0.5, 1.0]))
    assert as_class_labels(np.array([[2], [0]], dtype=np.uint8)).tolist() == [2, 0]

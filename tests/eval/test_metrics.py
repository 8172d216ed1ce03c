"""Metrics on hand-counted examples and against scikit-learn's reference AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dino_mx.eval.metrics import as_class_labels, classification_metrics


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


def test_no_auc_for_multiclass_scores() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=30)
    y_true = rng.integers(0, 3, size=30)
    m = classification_metrics(y_true, probs.argmax(1), probs)
    assert "auc" not in m


def test_binary_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, size=200)
    pos = np.clip(0.3 * y_true + rng.normal(0.35, 0.25, size=200), 0.0, 1.0)
    probs = np.stack([1 - pos, pos], axis=1)
    expected = roc_auc_score(y_true, pos)
    assert 0.6 < expected < 0.99  # a non-trivial AUC, so the comparison means something
    from_probs = classification_metrics(y_true, (pos > 0.5).astype(int), probs)
    from_scores = classification_metrics(y_true, (pos > 0.5).astype(int), pos, num_classes=2)
    from_torch = classification_metrics(
        torch.from_numpy(y_true[:, None]),
        torch.from_numpy(probs.argmax(1)),
        torch.from_numpy(probs),
    )
    assert type(from_probs["auc"]) is float
    assert from_probs["auc"] == pytest.approx(expected, abs=1e-12)
    assert from_scores["auc"] == pytest.approx(expected, abs=1e-12)
    assert from_torch["auc"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_binary_auc_without_scores_is_absent_and_single_class_is_nan() -> None:
    assert "auc" not in classification_metrics(np.array([0, 1]), np.array([0, 1]))
    m = classification_metrics(np.array([1, 1, 1]), np.array([1, 0, 1]), np.array([0.9, 0.2, 0.8]))
    assert math.isnan(m["auc"])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_invalid_inputs() -> None:
    with pytest.raises(NotImplementedError, match=r"multi-label \(e\.g\. ChestMNIST\)"):
        classification_metrics(np.zeros((4, 3), dtype=int), np.zeros((4, 3), dtype=int))
    with pytest.raises(ValueError, match="lengths differ"):
        classification_metrics(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        classification_metrics(np.array([0, 2]), np.array([0, 1]), num_classes=2)
    with pytest.raises(ValueError, match="binary"):
        classification_metrics(np.array([0, 2]), np.array([0, 1]), np.array([0.1, 0.5]))
    with pytest.raises(ValueError, match="empty"):
        as_class_labels(np.array([], dtype=int))
    with pytest.raises(ValueError, match="integer"):
        as_class_labels(np.array([0.5, 1.0]))
    assert as_class_labels(np.array([[2], [0]], dtype=np.uint8)).tolist() == [2, 0]

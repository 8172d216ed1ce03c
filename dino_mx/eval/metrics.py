"""Classification metrics shared by the k-NN and linear-probe evaluations.

Labels follow the MedMNIST convention (Yang et al., "MedMNIST v2", Scientific Data 10:41, 2023):
integer class indices in ``[0, C)``, stored as ``(N,)`` or ``(N, 1)``. Multi-label targets
``(N, L)`` with ``L > 1`` (ChestMNIST) are refused rather than scored as if single-label.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score


def as_class_labels(
    y: np.ndarray | torch.Tensor, name: str = "y", task: str = "evaluation"
) -> np.ndarray:
    """Validate single-label class indices and return them as a flat int64 array.

    Args:
        y: Labels of shape (N,) or (N, 1), integer (or integral float) class indices >= 0.
        name: Argument name used in error messages.
        task: What the caller does, used in the multi-label error message.

    Returns:
        Int64 array of shape (N,).

    Raises:
        NotImplementedError: ``y`` is multi-label, shape (N, L) with L > 1.
        ValueError: ``y`` is empty, has another shape, or holds non-integral or negative values.
    """
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        raise NotImplementedError(
            f"multi-label (e.g. ChestMNIST) {task} is not supported: {name} has shape "
            f"{arr.shape}, expected (N,) or (N, 1) class indices"
        )
    if arr.ndim == 2:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (N,) or (N, 1), got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    integral = np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_
    if not integral and not (
        np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))
    ):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    labels = arr.astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"{name} holds negative class index {labels.min()}")
    return labels


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    y_score: np.ndarray | None = None,
    num_classes: int | None = None,
) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 and, for binary tasks with scores, ROC AUC.

    Args:
        y_true: True class indices, shape (N,) or (N, 1).
        y_pred: Predicted class indices, shape (N,) or (N, 1).
        y_score: Optional scores: (N, C) class probabilities, or (N,) positive-class scores for
            a binary task. For a binary task column 1 of an (N, 2) array is the positive class.
        num_classes: Number of classes C. The task is binary when C == 2; when None it is binary
            if ``y_score`` has two columns, or (for 1-D scores) all labels are in {0, 1}.

    Returns:
        Plain floats under ``accuracy``, ``balanced_accuracy`` and ``macro_f1`` (over the classes
        present in ``y_true`` or ``y_pred``), plus ``auc`` when the task is binary and
        ``y_score`` is given; ``auc`` is NaN when ``y_true`` holds a single class.

    Raises:
        ValueError: Lengths differ, labels fall outside ``[0, num_classes)``, or ``y_score``
            does not fit the task.
    """
    true = as_class_labels(y_true, "y_true")
    pred = as_class_labels(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred lengths differ: {true.shape[0]} vs {pred.shape[0]}")
    if num_classes is not None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if max(true.max(), pred.max()) >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), found a larger one")
    metrics = {
        "accuracy": float(accuracy_score(true, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(true, pred)),
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
    }
    if y_score is None:
        return metrics

    if isinstance(y_score, torch.Tensor):
        y_score = y_score.detach().cpu().numpy()
    score = np.asarray(y_score, dtype=np.float64)
    if score.ndim not in (1, 2) or score.shape[0] != true.shape[0]:
        raise ValueError(
            f"y_score must have shape (N,) or (N, C) with N={true.shape[0]}, got {score.shape}"
        )
    if num_classes is not None:
        binary = num_classes == 2
    elif score.ndim == 2:
        binary = score.shape[1] == 2
    else:
        binary = max(true.max(), pred.max()) <= 1
    if not binary:
        if score.ndim == 1:
            raise ValueError("1-D y_score (positive-class scores) only fits a binary task")
        return metrics
    if score.ndim == 2:
        if score.shape[1] != 2:
            raise ValueError(f"a binary task needs y_score of shape (N, 2), got {score.shape}")
        score = score[:, 1]
    if true.max() > 1:
        raise ValueError("binary AUC expects labels in {0, 1}")
    # AUC is undefined without both classes; NaN keeps the key without inventing a number.
    has_both = np.unique(true).size == 2
    metrics["auc"] = float(roc_auc_score(true, score)) if has_both else math.nan
    return metrics

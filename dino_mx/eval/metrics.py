"""Classification metrics of the k-NN and linear-probe evaluations, as MedMNIST reports them.

MedMNIST v2 (Yang et al., "MedMNIST v2", Scientific Data 10:41, 2023; ``getACC`` / ``getAUC`` in
``medmnist/evaluator.py``) scores every dataset with ACC and AUC, by its task type
(``medmnist.INFO[flag]["task"]``):

- ``binary-class``: ACC of the predicted class, AUC of the positive-class score;
- ``multi-class`` and ``ordinal-regression`` (scored as multi-class): ACC of the arg-max class,
  AUC the mean of the per-class one-vs-rest AUCs;
- ``multi-label, binary-class`` (ChestMNIST, labels ``(N, L)`` of 0/1): ACC the mean per-label
  accuracy at threshold 0.5, AUC the mean of the per-label AUCs.

A ROC AUC is undefined for a class or label without both positive and negative examples in the
evaluated split (MedMNIST's ``getAUC`` then raises, as scikit-learn does). Such classes are left
out of the mean, which otherwise equals MedMNIST's number; ``auc`` is NaN when none is left.
Single-label targets are class indices in ``[0, C)``, stored as ``(N,)`` or ``(N, 1)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from dino_mx.data.tasks import BINARY, MULTICLASS, MULTILABEL, check_task


def infer_task(labels: np.ndarray | torch.Tensor, num_classes: int | None = None) -> str:
    """The task type of ``labels``: multi-label for ``(N, L)`` with L > 1, binary for two classes
    (``num_classes``, else the largest label + 1), multi-class otherwise."""
    shape = tuple(labels.shape)
    if len(shape) == 2 and shape[1] > 1:
        return MULTILABEL
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if np.prod(shape) else 0
    return BINARY if num_classes == 2 else MULTICLASS


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def as_class_labels(y: np.ndarray | torch.Tensor, name: str = "y") -> np.ndarray:
    """Validate single-label class indices and return them as a flat int64 array.

    Args:
        y: Labels of shape (N,) or (N, 1), integer (or integral float) class indices >= 0.
        name: Argument name used in error messages.

    Returns:
        Int64 array of shape (N,).

    Raises:
        ValueError: ``y`` is empty, multi-label ``(N, L)`` with L > 1, has another shape, or
            holds non-integral or negative values.
    """
    arr = _numpy(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        raise ValueError(
            f"{name} has shape {arr.shape}: multi-label targets, expected (N,) or (N, 1) class "
            f"indices (score multi-label data with task={MULTILABEL!r})"
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


def as_multilabel_targets(y: np.ndarray | torch.Tensor, name: str = "y") -> np.ndarray:
    """Validate multi-label targets (MedMNIST's uint8, or the dataset's float) -> int64 (N, L).

    Raises:
        ValueError: ``y`` is not a non-empty (N, L) array of 0/1 values.
    """
    arr = _numpy(y)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (N, L) array of 0/1 targets, got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 targets, found {np.unique(arr)[:5].tolist()}")
    return arr.astype(np.int64)


def mean_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean of scikit-learn's ROC AUC over columns, skipping undefined ones.

    Args:
        y_true: (N, K) 0/1 targets, one column per class (one-vs-rest) or label.
        y_score: (N, K) scores, higher meaning more likely 1.

    Returns:
        The mean AUC over the columns of ``y_true`` holding both 0 and 1; NaN if none does.
    """
    aucs = [roc_auc_score(t, s) for t, s in zip(y_true.T, y_score.T, strict=True) if np.ptp(t) > 0]
    return float(np.mean(aucs)) if aucs else math.nan


def _scores(y_score: np.ndarray | torch.Tensor, n: int) -> np.ndarray:
    score = _numpy(y_score).astype(np.float64)
    if score.ndim not in (1, 2) or score.shape[0] != n:
        raise ValueError(f"y_score must have shape (N,) or (N, C) with N={n}, got {score.shape}")
    return score


def _single_label_auc(
    true: np.ndarray, pred: np.ndarray, score: np.ndarray, num_classes: int | None
) -> float:
    """Binary: AUC of the positive-class score; multi-class: mean one-vs-rest AUC."""
    if num_classes is None:
        binary = score.shape[1] == 2 if score.ndim == 2 else max(true.max(), pred.max()) <= 1
    else:
        binary = num_classes == 2
    if binary:
        if score.ndim == 2 and score.shape[1] != 2:
            raise ValueError(f"a binary task needs y_score of shape (N, 2), got {score.shape}")
        if true.max() > 1:
            raise ValueError("binary AUC expects labels in {0, 1}")
        positive = score[:, 1] if score.ndim == 2 else score  # (N,)
        return mean_auc(true[:, None], positive[:, None])
    if score.ndim == 1:
        raise ValueError("1-D y_score (positive-class scores) only fits a binary task")
    if num_classes is not None and score.shape[1] != num_classes:
        raise ValueError(f"y_score has {score.shape[1]} columns for num_classes={num_classes}")
    if true.max() >= score.shape[1]:
        raise ValueError(
            f"y_true holds class {true.max()} but y_score has {score.shape[1]} columns"
        )
    one_hot = np.eye(score.shape[1], dtype=np.int64)[true]  # (N, C)
    return mean_auc(one_hot, score)


def classification_metrics(
    y_true: np.ndarray | torch.Tensor,
    y_pred: np.ndarray | torch.Tensor,
    y_score: np.ndarray | torch.Tensor | None = None,
    num_classes: int | None = None,
) -> dict[str, float]:
    """Single-label (binary, multi-class, ordinal) accuracy, balanced accuracy, macro F1, AUC.

    Args:
        y_true: True class indices, shape (N,) or (N, 1).
        y_pred: Predicted class indices, shape (N,) or (N, 1).
        y_score: Optional scores: (N, C) class probabilities, or (N,) positive-class scores for
            a binary task. For a binary task column 1 of an (N, 2) array is the positive class.
        num_classes: Number of classes C. The task is binary when C == 2; when None it is binary
            if ``y_score`` has two columns, or (for 1-D scores) all labels are in {0, 1}.

    Returns:
        Plain floats under ``accuracy``, ``balanced_accuracy`` and ``macro_f1`` (over the classes
        present in ``y_true`` or ``y_pred``), plus ``auc`` when ``y_score`` is given (see the
        module docstring for classes without positives).

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
    if y_score is not None:
        metrics["auc"] = _single_label_auc(true, pred, _scores(y_score, len(true)), num_classes)
    return metrics


def multilabel_metrics(
    y_true: np.ndarray | torch.Tensor, y_score: np.ndarray | torch.Tensor, threshold: float = 0.5
) -> dict[str, float]:
    """Multi-label accuracy, macro F1 and AUC, each the mean over the L labels.

    Args:
        y_true: (N, L) 0/1 targets.
        y_score: (N, L) per-label probabilities; a label is predicted when its score exceeds
            ``threshold`` (MedMNIST's ``getACC``).
        threshold: Decision threshold.

    Returns:
        ``accuracy`` (mean per-label accuracy), ``macro_f1`` (mean per-label F1, 0 for a label
        never true nor predicted) and ``auc`` (mean per-label AUC, see the module docstring).

    Raises:
        ValueError: Shapes differ or ``y_true`` is not 0/1.
    """
    true = as_multilabel_targets(y_true, "y_true")
    score = _scores(y_score, len(true))
    if score.shape != true.shape:
        raise ValueError(f"y_score shape {score.shape} differs from y_true shape {true.shape}")
    pred = (score > threshold).astype(np.int64)
    return {
        "accuracy": float(np.mean(pred == true)),  # every label has N rows: mean of the L means
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
        "auc": mean_auc(true, score),
    }


def task_metrics(
    task: str,
    y_true: np.ndarray | torch.Tensor,
    y_score: np.ndarray | torch.Tensor,
    y_pred: np.ndarray | torch.Tensor | None = None,
    num_classes: int | None = None,
) -> dict[str, float]:
    """:func:`multilabel_metrics` or :func:`classification_metrics`, by MedMNIST task type.

    Args:
        task: One of :data:`TASKS`.
        y_true: (N, L) 0/1 targets (multi-label) or (N,) class indices.
        y_score: (N, L) label probabilities or (N, C) class scores.
        y_pred: Single-label predictions (N,); default the arg-max of ``y_score``.
        num_classes: C for single-label tasks (2 for binary).
    """
    if check_task(task) == MULTILABEL:
        return multilabel_metrics(y_true, y_score)
    if y_pred is None:
        score = _numpy(y_score)
        y_pred = score.argmax(axis=1) if score.ndim == 2 else (score > 0.5).astype(np.int64)
    if task == BINARY:
        num_classes = 2
    return classification_metrics(y_true, y_pred, y_score, num_classes)

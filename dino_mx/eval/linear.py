"""Linear probe: logistic regression on frozen features, regularisation chosen on val.

Features are standardised with train statistics and one L2-regularised logistic regression
(lbfgs, ``random_state=0``) is fitted per inverse regularisation strength C: multinomial for
binary, multi-class and ordinal tasks, one binary regression per label
(``OneVsRestClassifier``) for multi-label ones. The C with the best validation score is reported
on the test split, without refitting on train + val. The score is val accuracy for single-label
tasks (DINO's protocol) and val AUC for multi-label ones, where accuracy at threshold 0.5 is
dominated by the rare positives (predicting no finding scores about 0.95 on ChestMNIST).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from dino_mx.data.tasks import BINARY, MULTILABEL, check_task
from dino_mx.eval.metrics import as_class_labels, as_multilabel_targets, infer_task, task_metrics

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0)
SELECT = ("accuracy", "auc")
SPLITS = ("train", "val", "test")


class SweepPoint(TypedDict):
    """One point of the C sweep."""

    c: float
    val_accuracy: float
    val_auc: float


class LinearProbeResult(TypedDict):
    """What :func:`linear_probe` returns."""

    task: str
    select: str
    best_c: float
    val: dict[str, float]
    test: dict[str, float]
    sweep: list[SweepPoint]


def _as_features(x: np.ndarray | torch.Tensor, name: str, n: int) -> np.ndarray:
    """Return ``x`` as a float64 (n, D) array, or raise ValueError."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, D) to match its labels, got {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def _as_labels(
    ys: Sequence[np.ndarray | torch.Tensor], task: str | None
) -> tuple[str, list[np.ndarray], int]:
    """Validated (task, labels per split, C or L); the task inferred from train when None."""
    if task is not None:
        check_task(task)
    if task == MULTILABEL or (task is None and infer_task(ys[0]) == MULTILABEL):
        out = [as_multilabel_targets(y, f"{s}_y") for y, s in zip(ys, SPLITS, strict=True)]
        if len({y.shape[1] for y in out}) != 1:
            raise ValueError(f"label counts differ across splits: {[y.shape[1] for y in out]}")
        if not (out[0].min(0) < out[0].max(0)).any():
            raise ValueError("train_y has no label with both 0 and 1; a probe needs one")
        return MULTILABEL, out, out[0].shape[1]
    out = [as_class_labels(y, f"{s}_y") for y, s in zip(ys, SPLITS, strict=True)]
    if np.unique(out[0]).size < 2:
        raise ValueError("train_y holds a single class; a probe needs at least two")
    num_classes = 2 if task == BINARY else int(max(y.max() for y in out)) + 1
    return task or infer_task(out[0], num_classes), out, num_classes


def _as_split_features(
    xs: Sequence[np.ndarray | torch.Tensor], ys: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Train, val and test features as float64 (N, D) arrays of one width, or ValueError."""
    out = [_as_features(x, f"{s}_x", len(y)) for x, y, s in zip(xs, ys, SPLITS, strict=True)]
    if len({x.shape[1] for x in out}) != 1:
        raise ValueError(f"feature dims differ across splits: {[x.shape[1] for x in out]}")
    return out


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int, multilabel: bool) -> Any:
    model = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, random_state=0)
    # One binary regression per label; a label constant in train gets a constant predictor.
    return (OneVsRestClassifier(model) if multilabel else model).fit(x, y)


def _probs(model: Any, x: np.ndarray, width: int, multilabel: bool) -> np.ndarray:
    """(N, L) label probabilities, or (N, C) class probabilities with zero columns for classes
    absent from the training split."""
    if multilabel:
        return model.predict_proba(x)
    probs = np.zeros((x.shape[0], width))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


def _evaluate(model: Any, x: np.ndarray, y: np.ndarray, task: str, width: int) -> dict[str, float]:
    """:func:`~dino_mx.eval.metrics.task_metrics` of ``model`` on (x, y)."""
    multilabel = task == MULTILABEL
    pred = None if multilabel else model.predict(x)
    return task_metrics(task, y, _probs(model, x, width, multilabel), pred, width)


def linear_probe(
    train_x: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    val_x: np.ndarray | torch.Tensor,
    val_y: np.ndarray | torch.Tensor,
    test_x: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
    cs: Sequence[float] = DEFAULT_CS,
    max_iter: int = 1000,
    *,
    task: str | None = None,
    select: str | None = None,
) -> LinearProbeResult:
    """Fit a logistic-regression probe per C, pick C on val, report val and test.

    Args:
        train_x: (N_train, D) frozen features (NumPy or torch).
        train_y: (N_train,) or (N_train, 1) class indices, or (N_train, L) 0/1 targets.
        val_x: (N_val, D) features used only to choose C.
        val_y: Val labels, as ``train_y``.
        test_x: (N_test, D) features.
        test_y: Test labels, as ``train_y``.
        cs: Inverse regularisation strengths to try; ties in the val score go to the smaller C.
        max_iter: lbfgs iteration cap per fit.
        task: A MedMNIST task type (:data:`~dino_mx.eval.metrics.TASKS`); default inferred
            from ``train_y``.
        select: Val metric that chooses C, ``accuracy`` or ``auc``; default ``auc`` for
            multi-label tasks, else ``accuracy``. A NaN (undefined) AUC never wins.

    Returns:
        ``task``, ``select``, ``best_c``; ``val`` and ``test``:
        :func:`~dino_mx.eval.metrics.task_metrics` of the chosen model; ``sweep``:
        ``{c, val_accuracy, val_auc}`` for every C, in increasing C.

    Raises:
        ValueError: Shapes disagree, an input is empty or non-finite, ``cs`` is empty or
            non-positive, ``task``/``select`` is unknown, or train has a single class.
    """
    task, ys, width = _as_labels((train_y, val_y, test_y), task)
    xs = _as_split_features((train_x, val_x, test_x), ys)
    select = _selection(cs, select, task)
    scaler = StandardScaler().fit(xs[0])
    train_x, val_x, test_x = (scaler.transform(x) for x in xs)
    sweep, best_c, model, val = _sweep(train_x, val_x, ys, cs, max_iter, task, width, select)
    test = _evaluate(model, test_x, ys[2], task, width)
    return {
        "task": task,
        "select": select,
        "best_c": best_c,
        "val": val,
        "test": test,
        "sweep": sweep,
    }


def _selection(cs: Sequence[float], select: str | None, task: str) -> str:
    """The val metric that chooses C (``select``, by default AUC for multi-label tasks, where
    accuracy at 0.5 rewards predicting no finding), checked with ``cs`` before any fit."""
    if len(cs) == 0 or min(cs) <= 0:
        raise ValueError(f"cs must be a non-empty sequence of positive floats, got {cs}")
    select = select or ("auc" if task == MULTILABEL else "accuracy")
    if select not in SELECT:
        raise ValueError(f"unknown select {select!r}; valid choices: {', '.join(SELECT)}")
    return select


def _sweep(
    train_x: np.ndarray,
    val_x: np.ndarray,
    ys: Sequence[np.ndarray],
    cs: Sequence[float],
    max_iter: int,
    task: str,
    width: int,
    select: str,
) -> tuple[list[SweepPoint], float, Any, dict[str, float]]:
    """Fit one probe per C in increasing order and keep the best on val: ``(sweep, best C, its
    model, its val metrics)``. Ties keep the smaller C (the stronger regularisation) and a NaN
    score never wins, so the choice is reproducible."""
    sweep: list[SweepPoint] = []
    best: tuple[float, float, Any, dict[str, float]] | None = None  # (score, C, model, val)
    for c in sorted({float(c) for c in cs}):
        model = _fit(train_x, ys[0], c, max_iter, task == MULTILABEL)
        val = _evaluate(model, val_x, ys[1], task, width)
        sweep.append({"c": c, "val_accuracy": val["accuracy"], "val_auc": val["auc"]})
        score = -math.inf if math.isnan(val[select]) else val[select]
        if best is None or score > best[0]:  # strict: ties keep the smaller C
            best = (score, c, model, val)
    assert best is not None
    _, best_c, model, val = best
    return sweep, best_c, model, val

"""Linear probe: logistic regression on frozen features, regularisation chosen on val.

Features are standardised with train statistics, one L2-regularised multinomial logistic
regression (lbfgs, ``random_state=0``) is fitted per inverse regularisation strength C, and the
C with the best validation accuracy is reported on the test split, without refitting on
train + val.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dino_mx.eval.metrics import as_class_labels, classification_metrics

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0)


class SweepPoint(TypedDict):
    """One point of the C sweep."""

    c: float
    val_accuracy: float


class LinearProbeResult(TypedDict):
    """What :func:`linear_probe` returns."""

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


def _class_probs(model: LogisticRegression, x: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C) probabilities, with zero columns for classes absent from the training split."""
    probs = np.zeros((x.shape[0], num_classes))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


def linear_probe(
    train_x: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    val_x: np.ndarray | torch.Tensor,
    val_y: np.ndarray | torch.Tensor,
    test_x: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
    cs: Sequence[float] = DEFAULT_CS,
    max_iter: int = 1000,
) -> LinearProbeResult:
    """Fit a logistic-regression probe per C, pick C on val accuracy, report val and test.

    Args:
        train_x: (N_train, D) frozen features (NumPy or torch).
        train_y: (N_train,) or (N_train, 1) class indices.
        val_x: (N_val, D) features used only to choose C.
        val_y: (N_val,) or (N_val, 1) class indices.
        test_x: (N_test, D) features.
        test_y: (N_test,) or (N_test, 1) class indices.
        cs: Inverse regularisation strengths to try; ties in val accuracy go to the smaller C.
        max_iter: lbfgs iteration cap per fit.

    Returns:
        ``best_c``; ``val`` and ``test``: :func:`~dino_mx.eval.metrics.classification_metrics`
        of the chosen model (with ``auc`` for binary tasks); ``sweep``: ``{c, val_accuracy}``
        for every C, in increasing C.

    Raises:
        NotImplementedError: Labels are multi-label, shape (N, L) with L > 1.
        ValueError: Shapes disagree, an input is empty or non-finite, ``cs`` is empty or
            non-positive, or the training split holds fewer than two classes.
    """
    task = "linear probing"
    names = ("train", "val", "test")
    ys = [
        as_class_labels(y, f"{name}_y", task)
        for y, name in zip((train_y, val_y, test_y), names, strict=True)
    ]
    xs = [
        _as_features(x, f"{name}_x", y.shape[0])
        for x, y, name in zip((train_x, val_x, test_x), ys, names, strict=True)
    ]
    if len({x.shape[1] for x in xs}) != 1:
        raise ValueError(f"feature dims differ across splits: {[x.shape[1] for x in xs]}")
    if len(cs) == 0 or min(cs) <= 0:
        raise ValueError(f"cs must be a non-empty sequence of positive floats, got {cs}")
    if np.unique(ys[0]).size < 2:
        raise ValueError("train_y holds a single class; a probe needs at least two")
    num_classes = int(max(y.max() for y in ys)) + 1

    scaler = StandardScaler().fit(xs[0])
    train_x_s, val_x_s, test_x_s = (scaler.transform(x) for x in xs)
    sweep: list[SweepPoint] = []
    best: tuple[float, float, LogisticRegression] | None = None  # (val accuracy, C, model)
    for c in sorted({float(c) for c in cs}):
        model = LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, random_state=0)
        model.fit(train_x_s, ys[0])
        val_accuracy = float(np.mean(model.predict(val_x_s) == ys[1]))
        sweep.append({"c": c, "val_accuracy": val_accuracy})
        if best is None or val_accuracy > best[0]:  # strict: ties keep the smaller C
            best = (val_accuracy, c, model)
    assert best is not None
    _, best_c, model = best

    def evaluate(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        probs = _class_probs(model, x, num_classes)  # (N, C)
        return classification_metrics(y, model.predict(x), probs, num_classes)

    return {
        "best_c": best_c,
        "val": evaluate(val_x_s, ys[1]),
        "test": evaluate(test_x_s, ys[2]),
        "sweep": sweep,
    }

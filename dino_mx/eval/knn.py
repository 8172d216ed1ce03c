"""Weighted k-nearest-neighbour classification of frozen features.

The k-NN evaluation of DINO (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021, ``eval_knn.py``): features are L2-normalised, neighbours are the k
training points of highest cosine similarity, and each neighbour votes for its class with weight
``exp(sim / T)``; the prediction is the class with the largest summed vote, and the votes,
normalised to sum to 1, are the class scores the AUC is computed from. For multi-label data
(ChestMNIST) the same vote runs per label: the score of label l is the weighted fraction of
neighbours having it, and the label is predicted when that fraction exceeds 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dino_mx.data.tasks import BINARY, MULTILABEL, check_task
from dino_mx.eval.metrics import as_class_labels, as_multilabel_targets, infer_task, task_metrics

DEFAULT_KS = (10, 20, 100, 200)


def _check_labels(train_labels: Tensor, n_train: int, num_classes: int | None) -> int:
    """Raise ValueError on invalid labels; return the classes C (or labels L if multi-label)."""
    if train_labels.ndim == 2:  # multi-label 0/1 targets
        if train_labels.shape[0] != n_train:
            raise ValueError(f"train_labels must have {n_train} rows, got {train_labels.shape}")
        if not bool(((train_labels == 0) | (train_labels == 1)).all()):
            raise ValueError("multi-label train_labels must hold 0/1 targets")
        width = int(train_labels.shape[1])
        if num_classes is not None and num_classes != width:
            raise ValueError(f"num_classes={num_classes} but train_labels has {width} labels")
        return width
    if tuple(train_labels.shape) != (n_train,):
        raise ValueError(f"train_labels must have shape ({n_train},), got {train_labels.shape}")
    if train_labels.is_floating_point() or train_labels.is_complex():
        raise ValueError(f"train_labels must be integer class indices, got {train_labels.dtype}")
    if int(train_labels.min()) < 0:
        raise ValueError("train_labels holds a negative class index")
    needed = int(train_labels.max()) + 1
    if num_classes is not None and num_classes < needed:
        raise ValueError(f"num_classes={num_classes} but train_labels holds class {needed - 1}")
    return needed if num_classes is None else num_classes


def _check_inputs(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int | None,
    chunk_size: int,
) -> int:
    """Raise ValueError on inconsistent inputs; return C (or L if multi-label)."""
    train_shape, test_shape = tuple(train_features.shape), tuple(test_features.shape)
    if len(train_shape) != 2 or len(test_shape) != 2 or train_shape[1] != test_shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D), got {train_shape}, {test_shape}")
    if train_shape[0] == 0 or test_shape[0] == 0:
        raise ValueError("train_features and test_features must be non-empty")
    if not train_features.is_floating_point():
        raise ValueError(f"features must be floating point, got {train_features.dtype}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if len(ks) == 0 or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return _check_labels(train_labels, train_shape[0], num_classes)


def _vote(top_labels: Tensor, weights: Tensor, k: int, width: int) -> tuple[Tensor, Tensor]:
    """Predictions and scores from the first k of the sorted neighbours.

    Args:
        top_labels: (B, K) class indices, or (B, K, L) 0/1 float targets if multi-label.
        weights: (B, K) vote weights.
        k: Neighbours that vote, k <= K.
        width: C classes (ignored if multi-label).

    Returns:
        Single-label: predictions (B,) and normalised votes (B, C). Multi-label: predictions
        (B, L) (score > 0.5) and scores (B, L), the weighted fraction of neighbours with label l.
    """
    w = weights[:, :k]  # (B, k)
    if top_labels.ndim == 3:
        scores = (w[:, :, None] * top_labels[:, :k]).sum(1) / w.sum(1, keepdim=True)  # (B, L)
        return (scores > 0.5).long(), scores
    votes = w.new_zeros(w.shape[0], width)  # (B, C)
    votes.scatter_add_(1, top_labels[:, :k], w)
    return votes.argmax(dim=1), votes / votes.sum(dim=1, keepdim=True)


@torch.no_grad()
def weighted_knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, tuple[Tensor, Tensor]]:
    """DINO's temperature-weighted k-NN classifier, for several k at once.

    Test rows are processed in chunks, so memory is O(chunk_size x N) rather than O(M x N);
    the top ``max(ks)`` neighbours are found once per chunk and every smaller k reads a prefix
    of that sorted list. Computation runs on ``train_features``' device and dtype. The split
    into chunks changes nothing except through the similarity matmul, whose rounding (1 ulp)
    some BLAS libraries vary with the block shape.

    Args:
        train_features: (N, D) floating-point features; L2-normalised here.
        train_labels: (N,) integer class indices in [0, C), or (N, L) 0/1 multi-label targets.
        test_features: (M, D) features; L2-normalised here.
        ks: Numbers of neighbours. A k larger than N is clamped to N (all training points vote);
            its result is still stored under the requested k.
        temperature: T in the vote weight ``exp(sim / T)`` (DINO: 0.07).
        num_classes: C; defaults to ``max(train_labels) + 1`` (L for multi-label labels).
        chunk_size: Test rows per similarity block.

    Returns:
        Mapping k -> (predictions, scores). Single-label: predictions (M,) int64 and class
        scores (M, C) summing to 1 per row, the summed vote weights per class, normalised; ties
        in the vote go to the smallest class index. Multi-label: scores (M, L), the weighted
        fraction of neighbours with each label, and predictions (M, L) int64, score > 0.5.

    Raises:
        ValueError: Shapes disagree, an input is empty, labels are invalid, ``temperature <= 0``,
            a k is < 1, or ``chunk_size`` < 1.
    """
    width = _check_inputs(
        train_features, train_labels, test_features, ks, temperature, num_classes, chunk_size
    )
    clamped = {k: min(int(k), train_features.shape[0]) for k in ks}
    max_k = max(clamped.values())
    train = F.normalize(train_features, dim=1)  # (N, D)
    dtype = train.dtype if train_labels.ndim == 2 else torch.long
    labels = train_labels.to(device=train.device, dtype=dtype)  # (N,) or (N, L)
    preds: dict[int, list[Tensor]] = {k: [] for k in set(clamped.values())}
    scores: dict[int, list[Tensor]] = {k: [] for k in set(clamped.values())}
    for start in range(0, test_features.shape[0], chunk_size):
        query = F.normalize(test_features[start : start + chunk_size].to(train), dim=1)  # (B, D)
        sim = query @ train.T  # (B, N)
        top_sim, top_idx = sim.topk(max_k, dim=1, largest=True, sorted=True)  # (B, K)
        # exp(sim / T) up to a per-row factor exp(-max_sim / T) that the normalisation cancels;
        # the shift keeps small temperatures from overflowing.
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()  # (B, K)
        top_labels = labels[top_idx]  # (B, K) or (B, K, L)
        for k in preds:
            k_preds, k_scores = _vote(top_labels, weights, k, width)
            preds[k].append(k_preds)
            scores[k].append(k_scores)
    return {k: (torch.cat(preds[kc]), torch.cat(scores[kc])) for k, kc in clamped.items()}


def _labels(
    train_labels: Tensor | np.ndarray,
    test_labels: Tensor | np.ndarray,
    num_classes: int | None,
    task: str | None,
) -> tuple[str, np.ndarray, np.ndarray, int]:
    """Validated (task, train labels, test labels, C or L); the task inferred when None."""
    multi = len(train_labels.shape) == 2 and train_labels.shape[1] > 1
    if task == MULTILABEL or (task is None and multi):
        train_y = as_multilabel_targets(train_labels, "train_labels")
        test_y = as_multilabel_targets(test_labels, "test_labels")
        if train_y.shape[1] != test_y.shape[1]:
            raise ValueError(f"train has {train_y.shape[1]} labels, test {test_y.shape[1]}")
        return MULTILABEL, train_y, test_y, train_y.shape[1]
    train_y = as_class_labels(train_labels, "train_labels")
    test_y = as_class_labels(test_labels, "test_labels")
    if task is not None and check_task(task) == BINARY:
        num_classes = 2
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    return task or infer_task(train_y, num_classes), train_y, test_y, num_classes


def knn_evaluate(
    train_features: Tensor,
    train_labels: Tensor | np.ndarray,
    test_features: Tensor,
    test_labels: Tensor | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    num_classes: int | None = None,
    task: str | None = None,
) -> dict[int, dict[str, float]]:
    """Weighted k-NN metrics per k, with accuracy and AUC as MedMNIST reports them.

    Args:
        train_features: (N, D) features.
        train_labels: (N,) or (N, 1) class indices, or (N, L) 0/1 multi-label targets.
        test_features: (M, D) features.
        test_labels: Labels of the test rows, as ``train_labels``.
        ks: Numbers of neighbours, see :func:`weighted_knn_predict`.
        temperature: Vote temperature T.
        chunk_size: Test rows per similarity block.
        num_classes: C; defaults to one more than the largest train or test label.
        task: A MedMNIST task type (:data:`~dino_mx.eval.metrics.TASKS`); default inferred
            from the labels (:func:`~dino_mx.eval.metrics.infer_task`).

    Returns:
        Mapping k -> :func:`~dino_mx.eval.metrics.task_metrics` of the test predictions, the
        normalised votes (per-label vote fractions if multi-label) as AUC scores.

    Raises:
        ValueError: Inputs are inconsistent (see :func:`weighted_knn_predict`) or ``task`` is
            unknown.
    """
    task, train_y, test_y, width = _labels(train_labels, test_labels, num_classes, task)
    if test_features.ndim != 2 or test_features.shape[0] != test_y.shape[0]:
        raise ValueError(
            f"test_features {tuple(test_features.shape)} does not match {test_y.shape[0]} labels"
        )
    results = weighted_knn_predict(
        train_features, torch.from_numpy(train_y), test_features, ks, temperature, width, chunk_size
    )
    return {
        k: task_metrics(task, test_y, score.cpu().numpy(), pred.cpu().numpy(), width)
        for k, (pred, score) in results.items()
    }

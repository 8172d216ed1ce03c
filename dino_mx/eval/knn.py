"""Weighted k-nearest-neighbour classification of frozen features.

The k-NN evaluation of DINO (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021, ``eval_knn.py``): features are L2-normalised, neighbours are the k
training points of highest cosine similarity, and each neighbour votes for its class with weight
``exp(sim / T)``; the prediction is the class with the largest summed vote.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dino_mx.eval.metrics import as_class_labels, classification_metrics

DEFAULT_KS = (10, 20, 100, 200)


def _check_inputs(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int | None,
    chunk_size: int,
) -> int:
    """Raise ValueError on inconsistent inputs; return the number of classes C."""
    train_shape, test_shape = tuple(train_features.shape), tuple(test_features.shape)
    if len(train_shape) != 2 or len(test_shape) != 2 or train_shape[1] != test_shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D), got {train_shape}, {test_shape}")
    if train_shape[0] == 0 or test_shape[0] == 0:
        raise ValueError("train_features and test_features must be non-empty")
    if not train_features.is_floating_point():
        raise ValueError(f"features must be floating point, got {train_features.dtype}")
    if train_labels.ndim == 2 and train_labels.shape[1] > 1:
        raise NotImplementedError(
            "multi-label (e.g. ChestMNIST) k-NN evaluation is not supported: "
            f"train_labels has shape {tuple(train_labels.shape)}"
        )
    if tuple(train_labels.shape) != train_shape[:1]:
        raise ValueError(
            f"train_labels must have shape {train_shape[:1]}, got {train_labels.shape}"
        )
    if train_labels.is_floating_point() or train_labels.is_complex():
        raise ValueError(f"train_labels must be integer class indices, got {train_labels.dtype}")
    if int(train_labels.min()) < 0:
        raise ValueError("train_labels holds a negative class index")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if len(ks) == 0 or min(ks) < 1:
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    needed = int(train_labels.max()) + 1
    if num_classes is not None and num_classes < needed:
        raise ValueError(f"num_classes={num_classes} but train_labels holds class {needed - 1}")
    return needed if num_classes is None else num_classes


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
        train_labels: (N,) integer class indices in [0, C).
        test_features: (M, D) features; L2-normalised here.
        ks: Numbers of neighbours. A k larger than N is clamped to N (all training points vote);
            its result is still stored under the requested k.
        temperature: T in the vote weight ``exp(sim / T)`` (DINO: 0.07).
        num_classes: C; defaults to ``max(train_labels) + 1``.
        chunk_size: Test rows per similarity block.

    Returns:
        Mapping k -> (predictions (M,) int64, class scores (M, C) summing to 1 per row), the
        scores being the summed vote weights per class, normalised. Ties in the vote go to the
        smallest class index.

    Raises:
        ValueError: Shapes disagree, an input is empty, labels are invalid, ``temperature <= 0``,
            a k is < 1, or ``chunk_size`` < 1.
        NotImplementedError: ``train_labels`` is multi-label, shape (N, L) with L > 1.
    """
    n_classes = _check_inputs(
        train_features, train_labels, test_features, ks, temperature, num_classes, chunk_size
    )
    n_train = train_features.shape[0]
    clamped = {k: min(int(k), n_train) for k in ks}
    max_k = max(clamped.values())
    train = F.normalize(train_features, dim=1)  # (N, D)
    labels = train_labels.to(device=train.device, dtype=torch.long)
    preds: dict[int, list[Tensor]] = {k: [] for k in set(clamped.values())}
    scores: dict[int, list[Tensor]] = {k: [] for k in set(clamped.values())}
    for start in range(0, test_features.shape[0], chunk_size):
        query = F.normalize(test_features[start : start + chunk_size].to(train), dim=1)  # (B, D)
        sim = query @ train.T  # (B, N)
        top_sim, top_idx = sim.topk(max_k, dim=1, largest=True, sorted=True)  # (B, K)
        top_labels = labels[top_idx]  # (B, K)
        # exp(sim / T) up to a per-row factor exp(-max_sim / T) that the normalisation cancels;
        # the shift keeps small temperatures from overflowing.
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()  # (B, K)
        for k, k_preds in preds.items():
            votes = top_sim.new_zeros(top_sim.shape[0], n_classes)  # (B, C)
            votes.scatter_add_(1, top_labels[:, :k], weights[:, :k])
            k_preds.append(votes.argmax(dim=1))
            scores[k].append(votes / votes.sum(dim=1, keepdim=True))
    return {k: (torch.cat(preds[kc]), torch.cat(scores[kc])) for k, kc in clamped.items()}


def knn_evaluate(
    train_features: Tensor,
    train_labels: Tensor | np.ndarray,
    test_features: Tensor,
    test_labels: Tensor | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    num_classes: int | None = None,
) -> dict[int, dict[str, float]]:
    """Weighted k-NN accuracy, balanced accuracy, macro F1 (and AUC if binary) per k.

    Args:
        train_features: (N, D) features.
        train_labels: (N,) or (N, 1) class indices.
        test_features: (M, D) features.
        test_labels: (M,) or (M, 1) class indices.
        ks: Numbers of neighbours, see :func:`weighted_knn_predict`.
        temperature: Vote temperature T.
        chunk_size: Test rows per similarity block.
        num_classes: C; defaults to one more than the largest train or test label.

    Returns:
        Mapping k -> :func:`~dino_mx.eval.metrics.classification_metrics` of the test
        predictions, with the normalised votes as scores for the binary AUC.

    Raises:
        NotImplementedError: Labels are multi-label, shape (N, L) with L > 1.
        ValueError: Inputs are inconsistent (see :func:`weighted_knn_predict`).
    """
    task = "k-NN evaluation"
    train_y = as_class_labels(train_labels, "train_labels", task)
    test_y = as_class_labels(test_labels, "test_labels", task)
    if test_features.ndim != 2 or test_features.shape[0] != test_y.shape[0]:
        raise ValueError(
            f"test_features {tuple(test_features.shape)} does not match {test_y.shape[0]} labels"
        )
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    train_y_t = torch.from_numpy(train_y)
    results = weighted_knn_predict(
        train_features, train_y_t, test_features, ks, temperature, num_classes, chunk_size
    )
    return {
        k: classification_metrics(test_y, pred.cpu().numpy(), score.cpu().numpy(), num_classes)
        for k, (pred, score) in results.items()
    }

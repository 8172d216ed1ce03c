"""Weighted k-NN against hand-computed votes and a scikit-learn reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from dino_mx.eval.knn import knn_evaluate, weighted_knn_predict


def _clusters(
    n_per_class: int, num_classes: int, dim: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters around 10 * e_c: separated in direction, so under cosine similarity."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    means = 10.0 * torch.eye(num_classes, dim)[labels]
    return means + torch.randn(len(labels), dim, generator=g), labels


def _reference_knn(
    train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int, t: float, c: int
) -> np.ndarray:
    """DINO's vote, written with scikit-learn's cosine neighbour search."""
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(train)
    dist, idx = nn.kneighbors(test)  # (M, k) each
    weights = np.exp((1.0 - dist) / t)  # cosine similarity = 1 - cosine distance
    votes = np.zeros((len(test), c))
    np.add.at(votes, (np.arange(len(test))[:, None], labels[idx]), weights)
    return votes.argmax(axis=1)


def test_hand_computed_votes() -> None:
    # Unnormalised on purpose: only directions matter. Cosine similarities to q = (1, 0):
    # a: 1, c: 1/sqrt(2), b: 0, d: -1.
    train = torch.tensor([[2.0, 0.0], [0.0, 5.0], [3.0, 3.0], [-1.0, 0.0]])  # a, b, c, d
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[4.0, 0.0]])
    s = 1 / math.sqrt(2)

    out = weighted_knn_predict(train, labels, query, ks=(2, 3), temperature=0.1)
    # k=2: a votes exp(1/0.1) for class 0, c votes exp(s/0.1) for class 1.
    w0, w1 = math.exp(10.0), math.exp(10.0 * s)
    pred, scores = out[2]
    assert pred.tolist() == [0]
    torch.testing.assert_close(scores, torch.tensor([[w0, w1]]) / (w0 + w1))
    # k=3 adds b's exp(0) = 1 for class 1: two votes for class 1 still lose to a's weight.
    pred, scores = out[3]
    assert pred.tolist() == [0]
    torch.testing.assert_close(scores, torch.tensor([[w0, w1 + 1.0]]) / (w0 + w1 + 1.0))

    # A high temperature flattens the weights to ~1 each, so the count wins: class 1.
    pred, scores = weighted_knn_predict(train, labels, query, ks=(3,), temperature=100.0)[3]
    v0, v1 = math.exp(0.01), math.exp(0.01 * s) + 1.0
    assert pred.tolist() == [1]
    torch.testing.assert_close(scores, torch.tensor([[v0, v1]]) / (v0 + v1))


def test_perfect_on_separated_clusters() -> None:
    train_x, train_y = _clusters(60, 3, 32, seed=0)
    test_x, test_y = _clusters(20, 3, 32, seed=1)
    out = weighted_knn_predict(train_x, train_y, test_x)
    assert set(out) == {10, 20, 100, 200}
    for pred, scores in out.values():
        assert torch.equal(pred, test_y)
        assert scores.shape == (60, 3)
        torch.testing.assert_close(scores.sum(1), torch.ones(60))
    # k=200 > N=180 is clamped: every training point votes.
    full = weighted_knn_predict(train_x, train_y, test_x, ks=(180,))[180]
    assert torch.equal(out[200][1], full[1])
    metrics = knn_evaluate(train_x, train_y, test_x, test_y.numpy()[:, None], ks=(10, 200))
    assert all(m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 for m in metrics.values())


@pytest.mark.parametrize("k", [1, 5, 20])
def test_matches_sklearn_reference(k: int) -> None:
    rng = np.random.default_rng(k)
    train = rng.normal(size=(300, 16))
    labels = rng.integers(0, 5, size=300)
    test = rng.normal(size=(80, 16))
    expected = _reference_knn(train, labels, test, k, 0.07, 5)
    pred, _ = weighted_knn_predict(
        torch.from_numpy(train), torch.from_numpy(labels), torch.from_numpy(test), ks=(k,)
    )[k]
    assert pred.tolist() == expected.tolist()


def test_chunked_equals_unchunked() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (257,), generator=g)
    ks = (1, 10, 100)
    # Unit vectors with entries +-1/8: every dot product is a multiple of 1/32, exact in any
    # summation order, so no BLAS blocking can change a bit and the outputs must be identical.
    signs = torch.randint(0, 2, (307, 64), generator=g).float() * 2 - 1
    train, test = signs[:257] / 8, signs[257:] / 8
    small = weighted_knn_predict(train, labels, test, ks=ks, chunk_size=7)
    whole = weighted_knn_predict(train, labels, test, ks=ks, chunk_size=10_000)
    for k in ks:
        assert torch.equal(small[k][0], whole[k][0])
        assert torch.equal(small[k][1], whole[k][1])
    # Gaussian features: the float32 matmul may round by 1 ulp differently per chunk shape.
    train, test = torch.randn(257, 24, generator=g), torch.randn(50, 24, generator=g)
    small = weighted_knn_predict(train, labels, test, ks=ks, chunk_size=7)
    whole = weighted_knn_predict(train, labels, test, ks=ks, chunk_size=10_000)
    for k in ks:
        assert torch.equal(small[k][0], whole[k][0])
        torch.testing.assert_close(small[k][1], whole[k][1], rtol=1e-5, atol=1e-6)


def test_binary_auc_uses_vote_scores() -> None:
    g = torch.Generator().manual_seed(3)
    train, test = torch.randn(120, 8, generator=g), torch.randn(40, 8, generator=g)
    train_y = (train[:, 0] > 0).long()
    test_y = (test[:, 0] + 0.5 * torch.randn(40, generator=g) > 0).long()
    metrics = knn_evaluate(train, train_y, test, test_y, ks=(5, 20))
    for k in (5, 20):
        _, scores = weighted_knn_predict(train, train_y, test, ks=(k,), num_classes=2)[k]
        assert metrics[k]["auc"] == pytest.approx(roc_auc_score(test_y, scores[:, 1]), abs=1e-12)


def test_invalid_inputs() -> None:
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    with pytest.raises(ValueError, match="temperature"):
        weighted_knn_predict(x, y, x, temperature=0.0)
    with pytest.raises(ValueError, match=r"\(N, D\) and \(M, D\)"):
        weighted_knn_predict(x, y, torch.randn(3, 5))
    with pytest.raises(ValueError, match="non-empty"):
        weighted_knn_predict(x, y, torch.randn(0, 4))
    with pytest.raises(ValueError, match="train_labels must have shape"):
        weighted_knn_predict(x, y[:9], x)
    with pytest.raises(ValueError, match="ks"):
        weighted_knn_predict(x, y, x, ks=(0,))
    with pytest.raises(ValueError, match="num_classes"):
        weighted_knn_predict(x, torch.full((10,), 3), x, num_classes=2)
    with pytest.raises(ValueError, match="test_features"):
        knn_evaluate(x, y, x, y[:5])
    multi = torch.randint(0, 2, (10, 14))
    with pytest.raises(ValueError, match="0/1 targets"):
        weighted_knn_predict(x, multi * 2, x)
    with pytest.raises(ValueError, match="14 labels"):
        weighted_knn_predict(x, multi, x, num_classes=3)
    with pytest.raises(ValueError, match="train has 14 labels, test 3"):
        knn_evaluate(x, multi, x, multi[:, :3])
    with pytest.raises(ValueError, match="unknown task 'multi'; valid tasks"):
        knn_evaluate(x, y, x, y, task="multi")


def test_hand_computed_multilabel_votes() -> None:
    # The neighbours of test_hand_computed_votes, now with two labels each.
    train = torch.tensor([[2.0, 0.0], [0.0, 5.0], [3.0, 3.0], [-1.0, 0.0]])  # a, b, c, d
    labels = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.uint8)
    query = torch.tensor([[4.0, 0.0]])
    s = 1 / math.sqrt(2)
    out = weighted_knn_predict(train, labels.float(), query, ks=(2, 3), temperature=0.1)
    w_a, w_c, w_b = math.exp(10.0), math.exp(10.0 * s), 1.0
    # k=2: a and c both have label 0 -> score 1; only c has label 1 -> w_c / (w_a + w_c).
    pred, scores = out[2]
    torch.testing.assert_close(scores, torch.tensor([[1.0, w_c / (w_a + w_c)]]))
    assert pred.tolist() == [[1, 0]]
    # k=3 adds b (label 1 only).
    pred, scores = out[3]
    total = w_a + w_c + w_b
    torch.testing.assert_close(scores, torch.tensor([[(w_a + w_c) / total, (w_c + w_b) / total]]))
    # A high temperature gives every neighbour weight ~1: label 1 held by 2 of 3 -> predicted.
    pred, scores = weighted_knn_predict(train, labels, query, ks=(3,), temperature=1e6)[3]
    torch.testing.assert_close(scores, torch.tensor([[2 / 3, 2 / 3]]))
    assert pred.tolist() == [[1, 1]]


def test_multilabel_known_answers() -> None:
    g = torch.Generator().manual_seed(4)
    train, test = torch.randn(300, 6, generator=g), torch.randn(100, 6, generator=g)
    # Labels that are functions of the features (sign of coordinates 0..3): AUC near 1.
    train_y, test_y = (train[:, :4] > 0).to(torch.uint8), (test[:, :4] > 0).to(torch.uint8)
    metrics = knn_evaluate(train, train_y, test, test_y, ks=(10,))[10]
    assert set(metrics) == {"accuracy", "macro_f1", "auc"}
    assert metrics["auc"] > 0.9 and metrics["accuracy"] > 0.8
    # Labels independent of the features: AUC near chance.
    noise = torch.randint(0, 2, (400, 4), generator=g)
    chance = knn_evaluate(train, noise[:300], test, noise[300:], ks=(50,))[50]
    assert abs(chance["auc"] - 0.5) < 0.1
    # The AUC is MedMNIST's mean per-label AUC of the vote fractions.
    _, scores = weighted_knn_predict(train, train_y.float(), test, ks=(10,))[10]
    expected = np.mean([roc_auc_score(test_y[:, i], scores[:, i]) for i in range(4)])
    assert metrics["auc"] == pytest.approx(expected, abs=1e-12)


def test_multiclass_auc_uses_vote_scores() -> None:
    train_x, train_y = _clusters(40, 3, 8, seed=5)
    test_x, test_y = _clusters(20, 3, 8, seed=6)
    test_x = test_x + 8.0 * torch.randn(test_x.shape, generator=torch.Generator().manual_seed(7))
    metrics = knn_evaluate(train_x, train_y, test_x, test_y, ks=(20,))[20]
    _, scores = weighted_knn_predict(train_x, train_y, test_x, ks=(20,))[20]
    expected = np.mean([roc_auc_score(test_y == c, scores[:, c]) for c in range(3)])
    assert 0.6 < expected < 0.99
    assert metrics["auc"] == pytest.approx(expected, abs=1e-12)
    ordinal = knn_evaluate(train_x, train_y, test_x, test_y, ks=(20,), task="ordinal-regression")
    assert ordinal[20] == metrics

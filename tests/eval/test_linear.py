"""Linear probe: accuracy on separable data, determinism, C chosen on val, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dino_mx.eval.linear import linear_probe


def _separable(n: int, seed: int, dim: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, linearly separable: argmax of three fixed projections, margin enforced."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(123).normal(size=(dim, 3))
    x = rng.normal(size=(4 * n, dim))
    logits = x @ w  # (4n, 3)
    top2 = np.sort(logits, axis=1)[:, -2:]
    keep = (top2[:, 1] - top2[:, 0]) > 0.5  # drop points near a boundary
    return x[keep][:n], logits[keep][:n].argmax(axis=1)


def _imbalanced_binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """80 % class 0 at x0 ~ -3, 20 % class 1 at x0 ~ +3, plus 4 noise dims."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    x = rng.normal(size=(n, 5))
    x[:, 0] += np.where(y == 1, 3.0, -3.0)
    return x, y


def test_accurate_and_deterministic_on_separable_data() -> None:
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = (
        _separable(n, s) for n, s in [(300, 0), (100, 1), (200, 2)]
    )
    first = linear_probe(tr_x, tr_y, va_x, va_y, te_x, te_y)
    assert first["test"]["accuracy"] >= 0.95
    assert first["val"]["accuracy"] >= 0.95
    assert first["test"]["auc"] > 0.99 and (first["task"], first["select"]) == (
        "multi-class",
        "accuracy",
    )
    assert [p["c"] for p in first["sweep"]] == [0.01, 0.1, 1.0, 10.0]
    # Torch inputs and (N, 1) labels give bit-identical results.
    second = linear_probe(
        torch.from_numpy(tr_x),
        torch.from_numpy(tr_y[:, None]),
        torch.from_numpy(va_x),
        torch.from_numpy(va_y),
        torch.from_numpy(te_x),
        torch.from_numpy(te_y),
    )
    assert second == first


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true:UserWarning")
def test_c_is_chosen_on_val_with_ties_to_smaller() -> None:
    tr_x, tr_y = _imbalanced_binary(200, 0)
    te_x, te_y = _imbalanced_binary(100, 1)
    cs = (1.0, 1e-6)
    # C=1e-6 shrinks the weights to ~0: with the unpenalised intercept it predicts the
    # majority class 0 everywhere. C=1 follows x0.
    balanced_val = linear_probe(tr_x, tr_y, te_x, te_y, te_x, te_y, cs=cs)
    assert balanced_val["best_c"] == 1.0
    sweep = {p["c"]: p["val_accuracy"] for p in balanced_val["sweep"]}
    assert sweep[1.0] >= 0.98
    assert sweep[1e-6] == pytest.approx(np.mean(te_y == 0))
    # A val split labelled all 0 must flip the choice, although test still prefers C=1.
    all_zero_val = linear_probe(tr_x, tr_y, te_x, np.zeros_like(te_y), te_x, te_y, cs=cs)
    assert all_zero_val["best_c"] == 1e-6
    assert all_zero_val["val"]["accuracy"] == 1.0
    assert all_zero_val["test"]["accuracy"] == pytest.approx(np.mean(te_y == 0))
    # Easy data: every C is perfect on val, so the smallest wins whatever the order of cs.
    va_x, va_y = _imbalanced_binary(100, 2)
    tie = linear_probe(tr_x, tr_y, va_x, va_y, te_x, te_y, cs=(10.0, 1.0, 3.0))
    assert [p["val_accuracy"] for p in tie["sweep"]] == [1.0, 1.0, 1.0]
    assert tie["best_c"] == 1.0


def test_binary_auc_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 6))
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(np.int64)  # noisy: AUC well below 1
    out = linear_probe(x[:200], y[:200], x[200:300], y[200:300], x[300:], y[300:], cs=(0.1,))
    scaler = StandardScaler().fit(x[:200])
    ref = LogisticRegression(C=0.1, max_iter=1000, random_state=0)
    ref.fit(scaler.transform(x[:200]), y[:200])
    expected = roc_auc_score(y[300:], ref.predict_proba(scaler.transform(x[300:]))[:, 1])
    assert 0.6 < expected < 0.99
    assert out["test"]["auc"] == pytest.approx(expected, abs=1e-12)


def test_multiclass_auc_matches_medmnist() -> None:
    from medmnist.evaluator import getAUC
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(6)
    x = rng.normal(size=(450, 6))
    y = (x[:, :3] + rng.normal(size=(450, 3))).argmax(1)  # noisy 3-class task
    out = linear_probe(x[:250], y[:250], x[250:350], y[250:350], x[350:], y[350:], cs=(0.1,))
    scaler = StandardScaler().fit(x[:250])
    ref = LogisticRegression(C=0.1, max_iter=1000, random_state=0)
    probs = ref.fit(scaler.transform(x[:250]), y[:250]).predict_proba(scaler.transform(x[350:]))
    expected = getAUC(y[350:], probs, "multi-class")
    assert 0.6 < expected < 0.95
    assert out["test"]["auc"] == pytest.approx(expected, abs=1e-12)


def _multilabel(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Five 0/1 labels, each a noiseless linear threshold of 8 features (one rare)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    w = np.random.default_rng(7).normal(size=(8, 5))
    return x, (x @ w > np.array([0, 0, 0, 0, 2.0])).astype(np.uint8)


def test_multilabel_known_answers() -> None:
    from medmnist.evaluator import getAUC
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = (
        _multilabel(n, s) for n, s in [(300, 0), (100, 1), (200, 2)]
    )
    out = linear_probe(tr_x, tr_y, va_x, va_y, te_x, te_y, cs=(0.1, 10.0))
    assert (out["task"], out["select"]) == ("multi-label, binary-class", "auc")
    assert set(out["test"]) == {"accuracy", "macro_f1", "auc"}
    assert out["test"]["auc"] > 0.98 and out["test"]["accuracy"] > 0.9
    assert [set(p) for p in out["sweep"]] == [{"c", "val_accuracy", "val_auc"}] * 2
    best = max(out["sweep"], key=lambda p: p["val_auc"])
    assert out["best_c"] == best["c"] and out["val"]["auc"] == best["val_auc"]
    # Equal to one scikit-learn logistic regression per label, scored by MedMNIST's getAUC.
    scaler = StandardScaler().fit(tr_x)
    probs = np.stack(
        [
            LogisticRegression(C=out["best_c"], max_iter=1000, random_state=0)
            .fit(scaler.transform(tr_x), tr_y[:, i])
            .predict_proba(scaler.transform(te_x))[:, 1]
            for i in range(5)
        ],
        axis=1,
    )
    assert out["test"]["auc"] == pytest.approx(getAUC(te_y, probs, "multi-label, binary-class"))
    # Labels unrelated to the features: chance AUC.
    rng = np.random.default_rng(3)
    noise = [(rng.random((n, 5)) < 0.3).astype(np.uint8) for n in (300, 100, 200)]
    chance = linear_probe(tr_x, noise[0], va_x, noise[1], te_x, noise[2], cs=(0.1,))
    assert abs(chance["test"]["auc"] - 0.5) < 0.08


def test_refusals() -> None:
    x, y = _separable(30, 0)
    multi = np.random.default_rng(0).integers(0, 2, size=(30, 14))
    with pytest.raises(ValueError, match=r"val_y has shape \(30, 14\): multi-label"):
        linear_probe(x, y, x, multi, x, y)
    with pytest.raises(ValueError, match="label counts differ"):
        linear_probe(x, multi, x, multi[:, :3], x, multi)
    with pytest.raises(ValueError, match="no label with both 0 and 1"):
        linear_probe(x, np.zeros((30, 3)), x, multi[:, :3], x, multi[:, :3])
    with pytest.raises(ValueError, match="shape"):
        linear_probe(x[:20], y, x, y, x, y)
    with pytest.raises(ValueError, match="cs"):
        linear_probe(x, y, x, y, x, y, cs=())
    with pytest.raises(ValueError, match="single class"):
        linear_probe(x, np.zeros(30, dtype=int), x, y, x, y)
    with pytest.raises(ValueError, match="unknown select 'f1'; valid choices: accuracy, auc"):
        linear_probe(x, y, x, y, x, y, select="f1")
    with pytest.raises(ValueError, match="unknown task"):
        linear_probe(x, y, x, y, x, y, task="regression")

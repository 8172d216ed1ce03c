"""KoLeo: the hand formula -mean(log nearest-neighbour distance), and its failure cases."""

import math

import pytest
import torch

from dino_mx.losses import KoLeoLoss


def hand_koleo(x):
    """-1/B sum_i log min_{j != i} ||x_i/|x_i| - x_j/|x_j|||, in Python floats."""
    rows = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in x.tolist()]
    total = 0.0
    for i, a in enumerate(rows):
        nearest = min(
            math.sqrt(sum((p - q) ** 2 for p, q in zip(a, b))) for j, b in enumerate(rows) if j != i
        )
        total += math.log(nearest)
    return -total / len(rows)


@pytest.mark.parametrize("shape", [(2, 3), (5, 4), (7, 16)])
def test_loss_equals_hand_computation(shape):
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape)
    assert KoLeoLoss()(x).item() == pytest.approx(hand_koleo(x), abs=1e-5)


def test_known_value_on_orthogonal_vectors():
    # Unit axes: every nearest neighbour is at distance sqrt(2); scale does not matter.
    x = torch.eye(4) * torch.tensor([[1.0], [2.0], [3.0], [0.5]])
    assert KoLeoLoss()(x).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-6)


def test_duplicates_and_one_sample_stay_finite_with_finite_gradients():
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], requires_grad=True)
    loss = KoLeoLoss()(x)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    all_same = torch.ones(4, 8, requires_grad=True)
    loss = KoLeoLoss(eps=1e-8)(all_same)
    assert loss.item() == pytest.approx(-math.log(1e-8), rel=1e-5)
    loss.backward()
    assert torch.isfinite(all_same.grad).all()
    one = torch.randn(1, 8, requires_grad=True)
    assert KoLeoLoss()(one).item() == 0.0


def test_spreading_lowers_the_loss():
    close = torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, -0.01]])
    spread = torch.tensor([[1.0, 0.0], [-0.5, 0.87], [-0.5, -0.87]])
    assert KoLeoLoss()(spread) < KoLeoLoss()(close)


def test_reduced_precision_input_is_computed_in_float32():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, -1.0]]).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = KoLeoLoss()(x)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        KoLeoLoss()(torch.randn(2, 3, 4))

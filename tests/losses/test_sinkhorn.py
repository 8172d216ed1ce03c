"""Sinkhorn-Knopp centring: its convention, the reference formula, and two real processes."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dino_mx.losses import DINOLoss, sinkhorn_knopp
from dino_mx.losses.centering import update_ema_center


def reference(logits, temp, n_iterations):
    """DINOv2's sinkhorn_knopp_teacher for one process, in float64 (exp without log space)."""
    Q = torch.exp(logits.double() / temp).t()  # (K, B)
    K, B = Q.shape
    Q /= Q.sum()
    for _ in range(n_iterations):
        Q /= Q.sum(dim=1, keepdim=True)
        Q /= K
        Q /= Q.sum(dim=0, keepdim=True)
        Q /= B
    return (Q * B).t()


def test_rows_sum_to_one_and_columns_to_b_over_k():
    # Convention: (B, K) targets; each sample's row is a distribution (sums to 1) and each
    # prototype's column holds B/K of the batch's mass (equipartition).
    torch.manual_seed(0)
    B, K = 32, 8
    logits = torch.randn(B, K)
    q = sinkhorn_knopp(logits, teacher_temp=1.0, n_iterations=50)
    assert q.shape == (B, K) and (q >= 0).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(B), atol=1e-4, rtol=0)
    torch.testing.assert_close(q.sum(dim=0), torch.full((K,), B / K), atol=1e-4, rtol=0)


def test_three_iterations_equal_dinov2_formula_and_rows_are_exact():
    torch.manual_seed(1)
    logits = torch.randn(12, 10)
    q = sinkhorn_knopp(logits, teacher_temp=0.5)  # DINOv2's 3 iterations
    torch.testing.assert_close(q.double(), reference(logits, 0.5, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(12), atol=1e-6, rtol=0)


def test_sharp_temperature_stays_finite_where_plain_exp_overflows():
    logits = torch.randn(16, 64) * 40  # / 0.04: exp(1000) overflows even float64
    assert not torch.isfinite(reference(logits, 0.04, 3)).all()
    q = sinkhorn_knopp(logits, teacher_temp=0.04)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(16), atol=1e-5, rtol=0)


def test_no_gradient_and_bad_inputs_raise():
    logits = torch.randn(4, 3, requires_grad=True)
    assert not sinkhorn_knopp(logits, 0.1).requires_grad
    with pytest.raises(ValueError, match="teacher_temp"):
        sinkhorn_knopp(logits, 0.0)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        sinkhorn_knopp(torch.randn(2, 3, 4), 0.1)
    with pytest.raises(ValueError, match="n_iterations"):
        sinkhorn_knopp(logits, 0.1, n_iterations=0)


def test_dino_loss_with_sinkhorn_uses_it_for_targets_and_keeps_its_centre():
    torch.manual_seed(2)
    teacher = [torch.randn(5, 6) for _ in range(2)]
    student = [torch.randn(5, 6) for _ in range(3)]
    loss_fn = DINOLoss(6, centering="sinkhorn_knopp")
    targets = sinkhorn_knopp(torch.cat(teacher), 0.07).split(5)
    expected = 0.0
    pairs = [(iq, iv) for iq in range(2) for iv in range(3) if iq != iv]
    for iq, iv in pairs:
        log_p = torch.log_softmax(student[iv] / 0.1, dim=-1)
        expected += (-targets[iq] * log_p).sum(-1).mean().item() / len(pairs)
    assert loss_fn(student, teacher, 0.07).item() == pytest.approx(expected, abs=1e-5)
    assert torch.equal(loss_fn.center, torch.zeros(1, 6))
    with pytest.raises(ValueError, match="softmax_center"):
        DINOLoss(6, centering="sinkhorn")


def _worker(rank, world, init_file, logits, sizes, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        start = sum(sizes[:rank])
        mine = logits[start : start + sizes[rank]]
        out[rank] = sinkhorn_knopp(mine, teacher_temp=0.3)
        center = torch.zeros(1, logits.shape[1])
        update_ema_center(center, mine, momentum=0.5)
        out[f"center{rank}"] = center
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
@pytest.mark.parametrize(
    "sizes",
    [pytest.param((5, 5), marks=pytest.mark.slow), (10, 0)],
    ids=["even", "one-empty"],
)
def test_two_processes_equal_one_process_on_the_whole_batch(tmp_path, sizes):
    torch.manual_seed(3)
    logits = torch.randn(10, 7)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, tmp_path / "init", logits, sizes, out), nprocs=2, join=True)
        out = dict(out)
    whole = sinkhorn_knopp(logits, teacher_temp=0.3)
    torch.testing.assert_close(torch.cat([out[0], out[1]]), whole, atol=1e-6, rtol=0)
    assert math.isclose(torch.cat([out[0], out[1]]).sum().item(), 10.0, rel_tol=1e-5)
    # The EMA centre moves to the global mean on every rank, even one without rows.
    for rank in (0, 1):
        torch.testing.assert_close(out[f"center{rank}"], 0.5 * logits.mean(0, keepdim=True))

"""The collapse guard on hand-computed teacher entropies (K = 4 prototypes, log K = ln 4)."""

import logging
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dino_mx.engine.collapse import CollapseGuard, build_collapse_guard, mean_over_processes
from dino_mx.losses.objective import teacher_entropies
from tests.conftest import make_config

LOG4 = math.log(4)  # 1.3863: the entropy of a uniform target over 4 prototypes


def monitors(*rows, step=None):
    """The monitors the methods log for a batch whose teacher targets are ``rows``."""
    out = teacher_entropies([torch.tensor(rows)])
    return out if step is None else {**out, "step": step}


UNIFORM = monitors([0.25] * 4, [0.25] * 4)  # every sample flat
ONE_HOT = monitors([1.0, 0, 0, 0], [1.0, 0, 0, 0])  # every sample on prototype 0
HEALTHY = monitors([1.0, 0, 0, 0], [0, 1.0, 0, 0])  # sharp, two prototypes used


def test_monitors_are_the_hand_computed_entropies():
    assert UNIFORM["teacher_entropy"] == pytest.approx(LOG4)
    assert UNIFORM["teacher_batch_entropy"] == pytest.approx(LOG4)
    assert ONE_HOT["teacher_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert ONE_HOT["teacher_batch_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert HEALTHY["teacher_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert HEALTHY["teacher_batch_entropy"] == pytest.approx(math.log(2))  # mean [.5, .5, 0, 0]


def test_uniform_for_the_whole_window_fires_once_naming_the_knobs():
    knobs = {"method.teacher_temp": 0.07, "optim.lr": 5e-4}
    guard = CollapseGuard("warn", LOG4, window=3, knobs=knobs)
    assert guard.update(UNIFORM) is None
    assert guard.update(UNIFORM) is None
    message = guard.update({**UNIFORM, "step": 20})
    assert message is not None and "\n" not in message
    assert "near uniform" in message and "per-sample entropy 1.386 >= 0.98 log K" in message
    assert "1.359" in message and "log K = 1.386, K = 4" in message  # 0.98 * ln 4 = 1.3585
    assert "to step 20" in message
    for knob in (
        "method.teacher_temp",
        "method.momentum_teacher",
        "optim.lr",
        "method.head.out_dim",
        "method.koleo_weight",
    ):
        assert knob in message
    assert "lower method.teacher_temp (now 0.07)" in message and "optim.lr (now 0.0005)" in message
    # Once per kind per run, however long it lasts.
    assert all(guard.update(UNIFORM) is None for _ in range(10))


def test_a_recovery_inside_the_window_restarts_the_count():
    guard = CollapseGuard("stop", LOG4, window=3)
    for m in (UNIFORM, UNIFORM, HEALTHY, UNIFORM, UNIFORM):
        assert guard.update(m) is None
    assert guard.update(UNIFORM) is not None  # three in a row again


def test_one_prototype_fires_with_its_own_advice():
    guard = CollapseGuard("warn", LOG4, window=2)
    assert guard.update(ONE_HOT) is None
    message = guard.update(ONE_HOT)
    assert "one prototype" in message and "batch entropy 0.000 <= 0.1 log K (0.139" in message
    assert "raise method.teacher_temp" in message and "resize method.head.out_dim" in message
    # The other kind is still reported after this one.
    guard.update(UNIFORM)
    assert "near uniform" in guard.update(UNIFORM)


def test_just_inside_the_thresholds_does_not_fire():
    # [.4, .2, .2, .2]: -(.4 ln .4 + .6 ln .2) = 1.3322 = 0.961 ln 4 < 0.98 ln 4.
    soft = monitors([0.4, 0.2, 0.2, 0.2])
    assert soft["teacher_entropy"] == pytest.approx(1.3322, abs=1e-4)
    # Two samples on one prototype, one on another: batch mean [2/3, 1/3, 0, 0], entropy
    # 0.6365 > 0.1 ln 4 = 0.1386.
    two = monitors([1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0])
    assert two["teacher_batch_entropy"] == pytest.approx(0.6365, abs=1e-4)
    guard = CollapseGuard("warn", LOG4, window=1)
    assert all(guard.update(m) is None for m in (soft, two, HEALTHY))
    assert CollapseGuard("warn", LOG4, window=1, uniform_ratio=0.96).update(soft) is not None
    assert CollapseGuard("warn", LOG4, window=1, onehot_ratio=0.5).update(two) is not None


def test_off_never_fires_and_steps_without_monitors_are_skipped():
    off = CollapseGuard("off", LOG4, window=1)
    assert all(off.update(m) is None for m in (UNIFORM, ONE_HOT) * 5)
    guard = CollapseGuard("warn", LOG4, window=2)
    assert guard.update(UNIFORM) is None
    assert guard.update({"loss": 1.0}) is None  # no teacher monitors: neither counts nor resets
    assert guard.update(UNIFORM) is not None


def test_nan_is_neither_collapse():
    nan = {"teacher_entropy": math.nan, "teacher_batch_entropy": math.nan}
    guard = CollapseGuard("warn", LOG4, window=1)
    assert guard.update(nan) is None


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"mode": "halt"}, "trainer.on_collapse 'halt'; valid choices: warn, stop, off"),
        ({"window": 0}, "trainer.collapse_window"),
        ({"uniform_ratio": 1.5}, "trainer.collapse_uniform_ratio"),
        ({"onehot_ratio": 0.0}, "trainer.collapse_onehot_ratio"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        CollapseGuard(**{"mode": "warn", "log_k": LOG4, **kwargs})


def test_builder_reads_the_trainer_method_and_optim_keys():
    cfg = make_config("+experiment=smoke", "paths.output_dir=x", "trainer.on_collapse=stop")
    guard = build_collapse_guard(cfg.trainer, cfg.method, cfg.optim)
    assert (guard.mode, guard.window, guard.uniform_ratio, guard.onehot_ratio) == (
        "stop",
        10,
        0.98,
        0.1,
    )
    assert guard.log_k == pytest.approx(math.log(64))  # the smoke head's out_dim
    assert guard.knobs == {
        "method.teacher_temp": cfg.method.teacher_temp,
        "method.momentum_teacher": cfg.method.momentum_teacher,
        "optim.lr": cfg.optim.lr,
        "method.head.out_dim": 64,
        "method.koleo_weight": 0.0,
    }


def test_watch_logs_one_line_and_stops_only_in_stop_mode(tmp_path, caplog):
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="dino_mx.engine.collapse"):
        warn = CollapseGuard("warn", LOG4, window=2)
        assert [warn.watch(UNIFORM, cpu, True, tmp_path) for _ in range(4)] == [False] * 4
        stop = CollapseGuard("stop", LOG4, window=2)
        assert [stop.watch(ONE_HOT, cpu, True, tmp_path) for _ in range(2)] == [False, True]
        quiet = CollapseGuard("stop", LOG4, window=1)
        assert quiet.watch(ONE_HOT, cpu, False, tmp_path) is True  # not the main process
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "near uniform" in lines[0] and "trainer.on_collapse=stop ends the run" in lines[0]
    assert "one prototype" in lines[1] and "no checkpoint was saved before" in lines[1]


def _worker(rank, world, init_file, out):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # Rank 0 is flat, rank 1 one-hot: per-sample mean (ln 4 + 0) / 2, batch the same.
        mine = UNIFORM if rank == 0 else ONE_HOT
        out[f"mean{rank}"] = mean_over_processes({**mine, "loss": float(rank)}, torch.device("cpu"))
        # Rank 0 alone would stop (ln 4), rank 1 alone would not (1.3322 < 0.98 ln 4 = 1.3585);
        # their mean 1.3592 is above: both stop, together.
        edge = monitors([0.25] * 4) if rank == 0 else monitors([0.4, 0.2, 0.2, 0.2])
        guard = CollapseGuard("stop", LOG4, window=1)
        out[f"stop{rank}"] = guard.watch(edge, torch.device("cpu"), rank == 0, init_file.parent)
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
@pytest.mark.slow
def test_two_processes_average_the_monitors_and_decide_alike(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(2, tmp_path / "init", out), nprocs=2, join=True)
        out = dict(out)
    for rank in (0, 1):
        mean = out[f"mean{rank}"]
        assert mean["teacher_entropy"] == pytest.approx(LOG4 / 2)
        assert mean["teacher_batch_entropy"] == pytest.approx(LOG4 / 2)
        assert mean["loss"] == float(rank)  # other scalars are left alone
    assert out["stop0"] is out["stop1"] is True
    alone = CollapseGuard("stop", LOG4, window=1)
    assert alone.watch(monitors([0.4, 0.2, 0.2, 0.2]), torch.device("cpu"), True, tmp_path) is False

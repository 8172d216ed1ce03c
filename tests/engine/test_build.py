"""The builders read the config once: the loop's numbers and the per-step schedules."""

import math

import pytest

from dino_mx.engine.build import LoopConfig, build_schedules
from dino_mx.engine.schedules import StepHParams
from tests.conftest import make_config


def test_loop_config_takes_the_numbers_the_loop_needs():
    cfg = make_config(
        "+experiment=smoke", "trainer.max_steps=200", "optim.freeze_last_layer_ratio=0.1"
    )
    loop = LoopConfig.from_config(cfg)
    assert (loop.max_steps, loop.batch_size, loop.grad_accum) == (200, 8, 1)
    assert loop.freeze_last_layer_steps == 20 and loop.clip_grad == cfg.optim.clip_grad
    assert loop.num_workers == 0 and loop.save_every == 2


def test_schedules_are_the_closed_forms_of_the_config():
    cfg = make_config(
        "trainer.max_steps=101",
        "optim.lr=1e-3",
        "optim.min_lr=1e-5",
        "optim.warmup_ratio=0.1",
        "method.momentum_teacher=0.99",
        "method.warmup_teacher_temp=0.02",
        "method.teacher_temp=0.06",
        "method.warmup_teacher_temp_ratio=0.2",
    )
    schedules = build_schedules(cfg)
    first, peak, last = schedules.at(0), schedules.at(10), schedules.at(100)
    assert isinstance(first, StepHParams)
    assert first.lr == 0.0 and peak.lr == pytest.approx(1e-3) and last.lr == pytest.approx(1e-5)
    assert (first.momentum, last.momentum) == (pytest.approx(0.99), pytest.approx(1.0))
    assert first.teacher_temp == pytest.approx(0.02) and schedules.at(20).teacher_temp == 0.06
    assert schedules.at(10).teacher_temp == pytest.approx(0.04)  # halfway through the warm-up
    halfway = schedules.at(55)  # cosine halfway between the peak (10) and the end (100)
    assert halfway.lr == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi / 2)))
    assert first.wd == pytest.approx(cfg.optim.weight_decay)
    assert last.wd == pytest.approx(cfg.optim.weight_decay_end)

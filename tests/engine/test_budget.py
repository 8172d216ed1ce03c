"""A run's length from epochs, a cap in steps and a budget in minutes (dino_mx.engine.budget)."""

import pytest
from omegaconf import OmegaConf

from dino_mx.engine.budget import Budget, fit_batch, minutes_cap, plan_steps, steps_per_epoch
from dino_mx.engine.sizing import cap_by_minutes, size_from_data, spread_evaluations
from dino_mx.engine.validate import problems
from dino_mx.train import train
from tests.conftest import make_config


def test_steps_per_epoch_drops_the_last_partial_batch():
    assert steps_per_epoch(4708, 128) == 36  # 36 * 128 = 4,608 of 4,708 images per pass
    assert steps_per_epoch(546, 32) == 17
    assert steps_per_epoch(10, 128) == 1  # smaller than a batch: one update is one pass


def test_epochs_follow_the_data_and_max_steps_caps_them():
    small = plan_steps(None, 22, 546, 128)  # 4 updates per pass
    assert small.steps == 88 and "546 images" in small.reason
    assert plan_steps(None, 2.5, 546, 128).steps == 10  # fractions round up
    large = plan_steps(800, 22, 4708, 128)  # 22 * 36 = 792 fits under the cap
    assert large == Budget(792, large.reason) and "capped" not in large.reason
    capped = plan_steps(800, 100, 4708, 128)  # 3,600 by epochs
    assert capped.steps == 800 and "capped by trainer.max_steps=800" in capped.reason
    assert plan_steps(300, None, 546, 128) == Budget(300, "trainer.max_steps=300")
    assert plan_steps(None, None, 546, 128) is None


def test_minutes_cap_fits_the_steps_in_the_time():
    budget = Budget(1000, "trainer.max_steps=1000")
    assert minutes_cap(budget, 10, 1.0).steps == 600
    assert minutes_cap(budget, 60, 1.0) is budget  # the minutes are no limit
    alone = minutes_cap(None, 2, 0.25)
    assert alone.steps == 480 and "0.250 s per update" in alone.reason


def test_a_run_needs_some_length():
    cfg = make_config("+experiment=smoke", "trainer.max_steps=null")
    assert any("trainer.max_steps=null" in p for p in problems(cfg))
    assert not problems(
        make_config("+experiment=smoke", "trainer.max_steps=null", "trainer.epochs=1")
    )
    bad = make_config(
        "+experiment=smoke", "trainer.epochs=0", "trainer.budget_min=-1", "method.koleo_gate=0"
    )
    found = " ".join(problems(bad))
    assert "trainer.epochs=0" in found and "trainer.budget_min=-1" in found
    assert "method.koleo_gate=0.0: must be a number > 0" in found


@pytest.mark.slow
def test_epochs_set_the_saved_max_steps_and_the_schedules(tmp_path, smoke_config):
    # The bundled train split holds 4,708 images: 588 updates of 8 per epoch.
    run = tmp_path / "run"
    cfg = smoke_config(
        run, "trainer.epochs=0.005", "trainer.max_steps=null", "trainer.save_every=0"
    )
    last = train(cfg, run)
    assert last["step"] == 2  # ceil(0.005 * 588) = 3 updates, logged at steps 0, 1, 2
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.trainer.max_steps == 3 and saved.trainer.epochs == 0.005


@pytest.mark.slow
def test_a_budget_in_minutes_is_measured_and_recorded(tmp_path, smoke_config, caplog):
    run = tmp_path / "run"
    cfg = smoke_config(run, "trainer.budget_min=0.02", "trainer.max_steps=100000")
    with caplog.at_level("INFO", logger="dino_mx.engine.sizing"):
        train(cfg, run)
    saved = OmegaConf.load(run / "config.yaml").trainer.max_steps
    line = next(r.getMessage() for r in caplog.records if "trainer.max_steps =" in r.getMessage())
    seconds = float(line.split(" at ")[1].split(" s per update")[0])  # logged to 3 decimals
    fits = [max(1, int(0.02 * 60 / (seconds + d))) for d in (5e-4, -5e-4)]
    assert fits[0] <= saved <= fits[1] < 100000
    assert f"trainer.max_steps = {saved}:" in line


def test_fit_batch_gives_small_sets_enough_updates_per_epoch():
    assert fit_batch(128, 4708, 1, 16) == 128  # 36 updates per epoch: unchanged
    assert fit_batch(128, 546, 1, 16) == 32  # 17 updates (64 would give 8)
    assert fit_batch(128, 1080, 1, 16) == 64  # 16 updates
    assert fit_batch(128, 1080, 2, 16) == 32  # two processes: 16 updates of 2 x 32
    assert fit_batch(128, 10, 1, 16) == 1


def test_sizing_derives_batch_lr_steps_and_evaluations_from_the_data():
    # The bundled train split: 4,708 images. 2 processes x 8 = 16 per update, 294 per epoch.
    cfg = make_config(
        "+experiment=smoke", "trainer.max_steps=null", "trainer.epochs=0.5", "trainer.eval_count=4"
    )
    sized = spread_evaluations(size_from_data(cfg, processes=2))
    assert sized.trainer.max_steps == 147 and sized.trainer.eval_every == 37
    assert cfg.trainer.max_steps is None  # the composed config is left as it was
    plain = spread_evaluations(make_config("+experiment=smoke", "trainer.eval_count=3"))
    assert (plain.trainer.max_steps, plain.trainer.eval_every) == (4, 2)
    # 4,708 images at >= 600 updates per epoch: batch 8 -> 4 (1,177 updates), lr halved.
    small = size_from_data(
        make_config("+experiment=smoke", "trainer.min_updates_per_epoch=600", "optim.lr=1e-3"), 1
    )
    assert small.trainer.batch_size == 4 and small.optim.lr == pytest.approx(5e-4)
    assert small.trainer.max_steps == 4  # no epochs: the length stays


def test_a_budget_in_minutes_caps_a_fresh_run_and_keeps_a_resumed_one(tmp_path):
    cfg = make_config("+experiment=smoke", "trainer.budget_min=1", "trainer.max_steps=1000")
    assert cap_by_minutes(cfg, lambda: 0.25, None).trainer.max_steps == 240
    assert cap_by_minutes(cfg, lambda: 0.01, None).trainer.max_steps == 1000
    ckpt = tmp_path / "step_0000100"
    ckpt.mkdir()
    (ckpt / "config.yaml").write_text("trainer:\n  max_steps: 321\n")
    resumed = cap_by_minutes(cfg, lambda: pytest.fail("a resumed run measures nothing"), ckpt)
    assert resumed.trainer.max_steps == 321

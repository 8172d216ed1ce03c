"""The best checkpoint: its pointer, the strict comparison, a resumed run's memory of it, rotation
that spares it, and readers that take it before the latest."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from dino_mx.checkpoint import (
    BestRecord,
    BestTracker,
    CheckpointParts,
    TrainState,
    best_checkpoint,
    choose_checkpoint,
    list_checkpoints,
    read_best,
    resolve_checkpoint,
    save_checkpoint,
    write_best,
)

METRIC = "knn/val_accuracy_k20"


def _folders(run: Path, *steps: int) -> Path:
    root = run / "checkpoints"
    for step in steps:
        (root / f"step_{step:07d}").mkdir(parents=True)
    return root


def test_pointer_round_trip_is_the_documented_json(tmp_path: Path) -> None:
    root = _folders(tmp_path, 300)
    assert read_best(tmp_path) is None and best_checkpoint(tmp_path) is None
    write_best(tmp_path, BestRecord("step_0000300", 300, METRIC, 0.83))
    assert json.loads((root / "best.json").read_text()) == {
        "checkpoint": "step_0000300",
        "step": 300,
        "metric": METRIC,
        "value": 0.83,
    }
    assert read_best(tmp_path) == BestRecord("step_0000300", 300, METRIC, 0.83)
    assert best_checkpoint(tmp_path) == root / "step_0000300"
    assert {p.name for p in root.iterdir()} == {"step_0000300", "best.json"}  # no temporary
    (root / "step_0000300").rmdir()
    assert best_checkpoint(tmp_path) is None  # the pointer names a folder that is gone
    (root / "best.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a best-checkpoint pointer"):
        read_best(tmp_path)


def test_only_a_strictly_greater_value_improves(tmp_path: Path) -> None:
    root = _folders(tmp_path, 2, 4)
    tracker = BestTracker(tmp_path, METRIC)
    assert tracker.improves({METRIC: 0.5})  # the first evaluation always does
    assert tracker.record(root / "step_0000002", 2, {METRIC: 0.5, "other": 1.0}) is None
    assert not tracker.improves({METRIC: 0.5})  # a tie keeps the earlier checkpoint
    assert not tracker.improves({METRIC: 0.4})
    assert not tracker.improves({METRIC: float("nan")})
    assert tracker.improves({METRIC: 0.5000001})
    previous = tracker.record(root / "step_0000004", 4, {METRIC: 0.75})
    assert previous == BestRecord("step_0000002", 2, METRIC, 0.5)
    assert read_best(tmp_path) == BestRecord("step_0000004", 4, METRIC, 0.75)
    with pytest.raises(ValueError) as error:
        tracker.improves({"knn/val_auc_k20": 0.9, "knn/val_macro_f1_k20": 0.7})
    message = str(error.value)
    assert f"trainer.best_metric={METRIC}" in message
    assert "knn/val_auc_k20, knn/val_macro_f1_k20" in message


def test_a_new_tracker_resumes_from_the_pointer(tmp_path: Path) -> None:
    root = _folders(tmp_path, 4)
    BestTracker(tmp_path, METRIC).record(root / "step_0000004", 4, {METRIC: 0.8})
    resumed = BestTracker(tmp_path, METRIC)  # a resumed run
    assert resumed.best == BestRecord("step_0000004", 4, METRIC, 0.8)
    assert not resumed.improves({METRIC: 0.7}) and resumed.improves({METRIC: 0.81})
    # Another metric's value is not comparable: the next evaluation sets the best.
    assert BestTracker(tmp_path, "knn/val_auc_k20").best is None
    (root / "step_0000004").rmdir()  # nothing left to guard
    assert BestTracker(tmp_path, METRIC).best is None


def _parts(step: int) -> CheckpointParts:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return CheckpointParts(model, model, torch.nn.Module(), optimizer, TrainState(step))


def test_rotation_spares_the_best_and_rotates_it_once_superseded(tmp_path: Path) -> None:
    acc = Accelerator(cpu=True)

    def save(step: int) -> Path:
        keep = [best] if (best := best_checkpoint(tmp_path)) is not None else []
        return save_checkpoint(acc, tmp_path, _parts(step), "a: 1\n", keep_last=1, keep=keep)

    def names() -> list[str]:
        return [p.name for p in list_checkpoints(tmp_path)]

    tracker = BestTracker(tmp_path, METRIC)
    tracker.record(save(1), 1, {METRIC: 0.9})
    save(2)
    save(3)
    assert names() == ["step_0000001", "step_0000003"]  # the best and keep_last=1 others
    ckpt = save(4)
    tracker.record(ckpt, 4, {METRIC: 0.95})  # step 1 is no longer the best
    save(5)
    assert names() == ["step_0000004", "step_0000005"]
    assert best_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_0000004"
    save_checkpoint(acc, tmp_path, _parts(6), "a: 1\n", keep_last=1)  # nothing spared
    assert names() == ["step_0000006"]


def test_readers_take_the_best_else_the_latest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _folders(tmp_path, 2, 4, 6)
    (root / "latest").write_text("step_0000006")
    with caplog.at_level(logging.INFO, logger="dino_mx.checkpoint.listing"):
        assert resolve_checkpoint(tmp_path) == root / "step_0000006"  # no pointer yet
    assert "latest checkpoint step_0000006" in caplog.text
    assert "no periodic evaluation, trainer.eval_every=0" in caplog.text

    write_best(tmp_path, BestRecord("step_0000004", 4, METRIC, 0.83))
    chosen = choose_checkpoint(tmp_path)
    assert (chosen.folder, chosen.choice) == (root / "step_0000004", "best")
    assert chosen.reason == (
        f"using the best checkpoint step_0000004 of {tmp_path} ({METRIC} 0.830 at step 4; the "
        "last one is step_0000006: --checkpoint latest or its folder)"
    )
    assert resolve_checkpoint(tmp_path, prefer="latest") == root / "step_0000006"
    assert choose_checkpoint(tmp_path, "latest").reason.endswith("(--checkpoint latest)")
    folder = root / "step_0000002"
    (folder / "train_state.json").write_text('{"step": 2}')
    assert choose_checkpoint(folder).choice == "folder"  # a checkpoint folder is itself
    assert resolve_checkpoint(folder, prefer="latest") == folder

    (root / "step_0000004").rmdir()  # the best is gone: fall back to the latest
    chosen = choose_checkpoint(tmp_path)
    assert (chosen.folder, chosen.choice) == (root / "step_0000006", "latest")
    assert "its best checkpoint step_0000004 is gone" in chosen.reason


def test_an_unknown_choice_names_the_valid_ones(tmp_path: Path) -> None:
    _folders(tmp_path, 2)
    with pytest.raises(
        ValueError, match="unknown checkpoint choice 'newest'; valid choices: best, latest"
    ):
        resolve_checkpoint(tmp_path, prefer="newest")

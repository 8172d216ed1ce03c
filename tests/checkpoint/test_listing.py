"""Finding a run's checkpoints: ``latest``, its fallbacks, and interrupted saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dino_mx.checkpoint import (
    checkpoint_step,
    latest_checkpoint,
    list_checkpoints,
    remove_temporaries,
    resolve_checkpoint,
    run_dir_of,
)


def _folders(run: Path, *names: str) -> Path:
    root = run / "checkpoints"
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_latest_names_the_checkpoint_else_the_newest_complete_one(tmp_path: Path) -> None:
    root = _folders(tmp_path, "step_0000002", "step_0000004", ".tmp_step_0000006")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000002", "step_0000004"]
    assert latest_checkpoint(tmp_path) == root / "step_0000004"  # no pointer yet
    (root / "latest").write_text("step_0000002\n")
    assert latest_checkpoint(tmp_path) == root / "step_0000002"
    (root / "latest").write_text("step_0000009")  # names a folder that is gone
    assert latest_checkpoint(tmp_path) == root / "step_0000004"
    assert latest_checkpoint(tmp_path / "elsewhere") is None

    remove_temporaries(tmp_path)
    assert not (root / ".tmp_step_0000006").exists()
    assert resolve_checkpoint(tmp_path) == root / "step_0000004"
    assert run_dir_of(root / "step_0000004") == tmp_path
    assert run_dir_of(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        resolve_checkpoint(tmp_path / "elsewhere")


def test_checkpoint_step_reads_train_state_else_the_folder_name(tmp_path: Path) -> None:
    root = _folders(tmp_path, "step_0000004")
    ckpt = root / "step_0000004"
    assert checkpoint_step(ckpt) == 4
    (ckpt / "train_state.json").write_text(json.dumps({"step": 7}))
    assert checkpoint_step(ckpt) == 7
    assert resolve_checkpoint(ckpt) == ckpt  # a folder holding train_state.json is one

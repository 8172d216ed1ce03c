"""``trainer.best_metric`` in a real run: a scripted periodic evaluation picks the best
checkpoint, rotation keeps it, and ``dino-mx eval`` / ``dino-mx export`` use it by default."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from accelerate import Accelerator
from torch import nn

from dino_mx.checkpoint import (
    BestRecord,
    latest_checkpoint,
    list_checkpoints,
    read_best,
    resolve_checkpoint,
)
from dino_mx.cli import main as dino_mx_main
from dino_mx.engine.run import run
from tests.engine.test_distributed import ROOT, torchrun
from tests.eval.conftest import TINY

METRIC = "knn/val_accuracy_k20"


class ScriptedEval:
    """A periodic evaluation returning scripted accuracies, one per call (main process)."""

    def __init__(self, accuracies: list[float]):
        self.accuracies, self.steps = list(accuracies), []

    def __call__(self, backbone: nn.Module, step: int, accelerator: Accelerator) -> dict:
        self.steps.append(step)
        return {METRIC: self.accuracies.pop(0), "knn/val_auc_k20": 0.5}


def _train(run_dir: Path, smoke_config, scripted: ScriptedEval, *overrides: str) -> None:
    cfg = smoke_config(
        run_dir,
        *TINY,
        "trainer.max_steps=6",
        "trainer.eval_every=2",
        "trainer.save_every=0",
        "trainer.keep_last=1",
        *overrides,
    )
    run(cfg, run_dir, lambda _: scripted)


def _result(run_dir: Path, *options: str) -> dict:
    argv = ["eval", "knn", "--ckpt", str(run_dir), "--k", "5", "--split", "val", *options]
    assert dino_mx_main([*argv, "--device", "cpu"]) == 0
    return json.loads((run_dir / "eval" / "knn_val.json").read_text())


@pytest.mark.slow
def test_the_best_evaluation_picks_the_checkpoint_eval_and_export_read(
    tmp_path: Path, smoke_config, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    scripted = ScriptedEval([0.5, 0.9, 0.7])  # at steps 2, 4, 6
    with caplog.at_level(logging.INFO, logger="dino_mx.engine.best"):
        _train(run_dir, smoke_config, scripted)
    assert scripted.steps == [1, 3, 5]  # the index of the step just taken
    assert f"step 4: new best {METRIC} = 0.900 (was 0.500 at step 2)" in caplog.text
    root = run_dir / "checkpoints"
    assert read_best(run_dir) == BestRecord("step_0000004", 4, METRIC, 0.9)
    # save_every=0 saves only at the end; the best was saved when it was measured, the step-2
    # best was rotated once superseded, and keep_last=1 kept the last as well.
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_0000004", "step_0000006"]
    assert latest_checkpoint(run_dir) == root / "step_0000006"  # what a resume continues
    assert resolve_checkpoint(run_dir) == root / "step_0000004"

    best = _result(run_dir)
    assert "teacher, step 4 (best checkpoint)" in capsys.readouterr().out
    assert (best["checkpoint"], best["checkpoint_choice"], best["step"]) == (
        str(root / "step_0000004"),
        "best",
        4,
    )
    last = _result(run_dir, "--checkpoint", "latest")
    assert "teacher, step 6 (latest checkpoint)" in capsys.readouterr().out
    assert (last["checkpoint_choice"], last["step"]) == ("latest", 6)

    for choice, step in (("best", 4), ("latest", 6)):
        out = tmp_path / f"export_{choice}"
        argv = ["export", "--ckpt", str(run_dir), "--out", str(out), "--checkpoint", choice]
        assert dino_mx_main(argv) == 0
        info = json.loads((out / "dino_mx_export.json").read_text())
        assert (info["step"], info["checkpoint_choice"]) == (step, choice)


@pytest.mark.slow
def test_a_metric_the_evaluation_does_not_log_stops_the_run_at_the_first_evaluation(
    tmp_path: Path, smoke_config
) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError) as error:
        _train(run_dir, smoke_config, ScriptedEval([0.5]), "trainer.best_metric=knn/val_acc")
    assert str(error.value) == (
        "trainer.best_metric=knn/val_acc is not a scalar of the periodic evaluation; it "
        f"returned: {METRIC}, knn/val_auc_k20"
    )
    assert list_checkpoints(run_dir) == [] and read_best(run_dir) is None


@pytest.mark.dist
@pytest.mark.slow
def test_two_processes_save_the_best_the_main_process_picks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the main process evaluates; the other must learn the decision and join each save.
    monkeypatch.setenv("DINO_MX_TEST_SCORES", "0.5,0.9,0.7")
    run_dir = tmp_path / "run"
    overrides = ("trainer.max_steps=6", "trainer.eval_every=2", "trainer.keep_last=1")
    worker = str(ROOT / "tests/engine/dist_worker.py")
    torchrun(worker, str(run_dir), str(tmp_path), *TINY, *overrides, cwd=tmp_path)
    assert read_best(run_dir) == BestRecord("step_0000004", 4, METRIC, 0.9)
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_0000004", "step_0000006"]
    best = run_dir / "checkpoints" / "step_0000004"
    assert {p.name for p in best.glob("rng_state_*.json")} == {
        "rng_state_0.json",
        "rng_state_1.json",
    }

"""Resuming: a changed architecture is refused naming each key, a refused start writes nothing,
and ``train_log.jsonl`` holds each step once after an interrupted run is resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import dino_mx.engine.trainer as trainer_module
from dino_mx.checkpoint import latest_checkpoint
from dino_mx.cli import main
from dino_mx.engine.resume import config_differences, may_change, truncate_history
from dino_mx.train import train


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and mtime (ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def steps(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished smoke run of 2 steps: checkpoints/step_0000002 (3 heads, 64 prototypes)."""
    run = tmp_path_factory.mktemp("resume") / "run"
    assert main(["train", "+experiment=smoke", f"paths.output_dir={run}", *SMALL]) == 0
    return run


SMALL = ("trainer.progress=false", "trainer.max_steps=2")


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dino-mx train: error: "), err
    return err.removeprefix("dino-mx train: error: ").rstrip("\n")


def test_resume_with_a_changed_architecture_is_refused_naming_each_key(trained, capsys):
    before = listing(trained)
    changed = ("model.num_heads=6", "method.head.out_dim=32", "augment.n_local=3")
    args = ["+experiment=smoke", f"paths.output_dir={trained}", *SMALL, "trainer.resume=true"]
    assert main(["train", *args, *changed, "trainer.batch_size=4"]) == 2
    assert one_line(capsys) == (
        f"cannot resume {trained}/checkpoints/step_0000002 with a different config: "
        "augment.n_local: 2 in the checkpoint, 3 now; "
        "method.head.out_dim: 64 in the checkpoint, 32 now; "
        "model.num_heads: 3 in the checkpoint, 6 now; "
        "trainer.batch_size: 8 in the checkpoint, 4 now "
        "(set them back, or train into another paths.output_dir)"
    )
    assert listing(trained) == before  # no parameters.txt, TensorBoard file or config.yaml


def test_start_over_checkpoints_without_resume_is_refused_and_writes_nothing(trained, capsys):
    before = listing(trained)
    assert main(["train", "+experiment=smoke", f"paths.output_dir={trained}", *SMALL]) == 2
    assert one_line(capsys) == (
        f"{trained} already holds checkpoints (step_0000002); pass trainer.resume=true to "
        "continue that run, or choose another paths.output_dir"
    )
    assert listing(trained) == before


def test_schedule_logging_and_optimiser_values_may_change_on_resume(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    allowed = ("trainer.max_steps=3", "trainer.log_every=2", "optim.lr=1e-4", "data.num_workers=0")
    args = ["+experiment=smoke", f"paths.output_dir={run}", "trainer.progress=false"]
    assert main(["train", *args, "trainer.resume=true", *allowed]) == 0
    assert latest_checkpoint(run).name == "step_0000003"
    assert [e["step"] for e in steps(run)] == [0, 1, 2]


def test_config_differences_refuse_shapes_and_data_but_not_schedules():
    old = {
        "model": {"num_heads": 3, "depth": 2},
        "method": {"head": {"out_dim": 64}, "teacher_temp": 0.04},
        "data": {"flag": "pneumoniamnist", "root": "/a", "num_workers": 2},
        "augment": {"n_local": 2, "brightness": 0.4, "global_size": 28},
        "trainer": {"max_steps": 4, "batch_size": 8, "log_every": 1, "on_collapse": "warn"},
        "optim": {"lr": 5e-4},
        "paths": {"output_dir": "/runs/a"},
    }
    new = json.loads(json.dumps(old))
    new["model"]["num_heads"] = 6
    new["method"]["head"]["out_dim"] = 32
    new["data"] |= {"flag": "pathmnist", "root": "/b", "num_workers": 0}
    new["augment"] |= {"n_local": 4, "brightness": 0.2}
    new["trainer"] |= {"max_steps": 9, "batch_size": 16, "log_every": 5, "on_collapse": "stop"}
    new["optim"]["lr"] = 1e-4
    new["paths"]["output_dir"] = "/runs/moved"
    new["method"]["koleo_weight"] = 0.1  # a key the checkpoint predates: not compared
    assert config_differences(old, new) == [
        "augment.n_local: 2 in the checkpoint, 4 now",
        "data.flag: pneumoniamnist in the checkpoint, pathmnist now",
        "method.head.out_dim: 64 in the checkpoint, 32 now",
        "model.num_heads: 3 in the checkpoint, 6 now",
        "trainer.batch_size: 8 in the checkpoint, 16 now",
    ]
    assert config_differences(old, old) == []
    assert may_change("trainer.eval_every") and not may_change("trainer.seed")
    assert not may_change("distill.model") and not may_change("adapter.r")
    # The layer-wise lr factors decide the optimiser's parameter groups, saved in its state.
    assert may_change("optim.lr") and not may_change("optim.layerwise_decay")
    assert not may_change("optim.patch_embed_lr_mult")


class SaveKilledError(Exception):
    """Stands for a kill during the final save."""


@pytest.mark.slow
def test_train_log_has_each_step_once_after_a_resume(tmp_path, smoke_config, monkeypatch):
    run = tmp_path / "run"
    saves = []
    real_save = trainer_module.save_checkpoint

    def killed_at_the_second_save(*args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise SaveKilledError
        return real_save(*args, **kwargs)

    # Smoke: log_every=1, save_every=2, max_steps=4: steps 0-3 are logged, only step 2 is saved.
    monkeypatch.setattr(trainer_module, "save_checkpoint", killed_at_the_second_save)
    with pytest.raises(SaveKilledError):
        train(smoke_config(run), run)
    monkeypatch.undo()
    interrupted = steps(run)
    assert [e["step"] for e in interrupted] == [0, 1, 2, 3]
    assert latest_checkpoint(run).name == "step_0000002"
    train(smoke_config(run, "trainer.resume=true"), run)
    resumed = steps(run)
    assert [e["step"] for e in resumed] == [0, 1, 2, 3]  # was 0, 1, 2, 3, 2, 3
    # Steps 2 and 3 are logged again by the resumed run, bit for bit as the first time.
    assert resumed == interrupted


def test_truncate_history_keeps_the_steps_before_the_checkpoint(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / (s + 1)}) + "\n" for s in range(6)))
    truncate_history(log, 3)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["train_log.jsonl"]  # no temporary left
    mtime = log.stat().st_mtime_ns
    truncate_history(log, 3)  # nothing to drop: the file is not rewritten
    assert log.stat().st_mtime_ns == mtime
    truncate_history(log, 0)  # a fresh start over an old log
    assert log.read_text() == ""
    truncate_history(tmp_path / "none.jsonl", 2)  # no log yet
    assert not (tmp_path / "none.jsonl").exists()

"""Faults around checkpoints (issue 16): a pickle payload in a shared run folder, an infinite or
exploding learning rate, weights that turn NaN, a NaN loss on one of two processes. Each test
checks the outcome: no code ran, no bad checkpoint exists, ``latest`` is good and loads, and
the message is one line naming the file or the last good checkpoint."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from omegaconf import DictConfig
from safetensors.torch import load_file

from dino_mx.checkpoint import (
    DivergedError,
    LegacyCheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_component,
)
from dino_mx.engine.run import build_trainer, make_accelerator
from dino_mx.errors import UserError
from dino_mx.eval.cli import main as eval_main
from dino_mx.train import train
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
OLD_FILES = (
    "custom_checkpoint_0.pkl",
    "custom_checkpoint_1.pkl",
    "custom_checkpoint_2.pkl",
    "optimizer.bin",
    "random_states_0.pkl",
)


class Payload:
    """Unpickling this creates ``path``: the harmless stand-in for code run from disk."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def all_tensors(ckpt: Path) -> dict[str, torch.Tensor]:
    files = sorted(ckpt.glob("*.safetensors"))
    return {f"{f.name}:{k}": v for f in files for k, v in load_file(f).items()}


def assert_all_finite(ckpt: Path) -> None:
    tensors = all_tensors(ckpt)
    assert tensors
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, bad


def smoke(run: Path, *overrides: str) -> DictConfig:
    """The smoke config of ``run`` (what the ``smoke_config`` fixture builds)."""
    return make_config(
        "+experiment=smoke", f"paths.output_dir={run}", "trainer.progress=false", *overrides
    )


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-step run turned into the older format: the state as pickles holding payloads."""
    run = tmp_path_factory.mktemp("old") / "run"
    train(smoke(run, "trainer.max_steps=2"), run)
    ckpt = latest_checkpoint(run)
    for file in ckpt.iterdir():
        if file.name not in ("model.safetensors", "config.yaml"):
            file.unlink()
    for name in OLD_FILES:
        (ckpt / name).write_bytes(pickle.dumps(Payload(run.parent / f"ran_{name}")))
    return run


def test_the_payload_would_run_if_unpickled(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()  # so the absence of a marker below means nothing unpickled


def test_resuming_an_old_pickle_checkpoint_is_refused_without_unpickling(old_run):
    def listing() -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(old_run)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in old_run.rglob("*")
        }

    before = listing()
    with pytest.raises(LegacyCheckpointError) as error:
        train(smoke(old_run, "trainer.max_steps=4", "trainer.resume=true"), old_run)
    message = str(error.value)
    assert "\n" not in message
    assert "step_0000002/custom_checkpoint_0.pkl: written by an older dino-mx" in message
    assert "cannot be resumed safely" in message
    assert not list(old_run.parent.glob("ran_*"))
    assert [p.name for p in list_checkpoints(old_run)] == ["step_0000002"]  # nothing new
    assert listing() == before  # refused before the trainer wrote parameters.txt or tb/


def test_eval_of_an_old_checkpoint_refuses_the_teacher_and_reads_the_student(
    old_run, capsys, monkeypatch
):
    # As in a fresh process: no handler left by an earlier test on a stream pytest has closed.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    assert eval_main(["knn", "--ckpt", str(old_run), "--device", "cpu", "--k", "5"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    err = "\n".join(line for line in lines if "using the latest checkpoint" not in line)
    assert len(err.splitlines()) == 1, err  # the error, after the line saying what was read
    assert "custom_checkpoint_0.pkl: written by an older dino-mx" in err
    assert "--which student" in err
    with pytest.raises(LegacyCheckpointError, match="custom_checkpoint_2.pkl"):
        load_component(latest_checkpoint(old_run), "train_state")
    assert not list(old_run.parent.glob("ran_*"))
    # model.safetensors is data: the student of an old checkpoint still evaluates.
    args = ["knn", "--ckpt", str(old_run), "--which", "student", "--device", "cpu", "--k", "5"]
    assert eval_main(args) == 0
    assert not list(old_run.parent.glob("ran_*"))


@pytest.mark.parametrize("lr", ["inf", "-1e-3", "0", "nan"])
def test_a_learning_rate_that_is_not_finite_and_positive_is_refused_before_anything(
    tmp_path, smoke_config, lr
):
    run = tmp_path / "run"
    with pytest.raises(UserError, match=r"^optim\.lr=\S+: must be a finite number > 0$"):
        train(smoke_config(run, f"optim.lr={lr}"), run)
    assert not run.exists()


def test_weights_that_turn_nan_are_never_saved_and_latest_stays_good(tmp_path, smoke_config):
    run = tmp_path / "run"
    cfg = smoke_config(run, "trainer.max_steps=5", "trainer.save_every=1", "trainer.keep_last=1")
    set_seed(cfg.trainer.seed)
    run.mkdir()
    trainer = build_trainer(cfg, run, make_accelerator(cfg, run))
    step = trainer.step

    def poisoned_step(*args, **kwargs):  # the third update leaves one NaN in the student
        out = step(*args, **kwargs)
        if trainer.state.step == 2:
            with torch.no_grad():
                next(trainer.student.parameters()).view(-1)[0] = float("nan")
        return out

    trainer.step = poisoned_step
    with pytest.raises(DivergedError) as error:
        trainer.fit()
    good = run / "checkpoints" / "step_0000002"
    assert str(error.value) == (
        "the weights diverged at step 3 (1 of 46 student tensors not finite) and were not saved; "
        f"the last good checkpoint is {good}; lower optim.lr or raise optim.warmup_ratio"
    )
    # keep_last=1 rotated step 1 away, never the newest good one; no trace of step 3.
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["latest", "step_0000002"]
    assert latest_checkpoint(run) == good
    assert_all_finite(good)


def test_an_infinite_lr_that_slips_past_validation_saves_nothing(tmp_path, smoke_config):
    run = tmp_path / "run"
    cfg = smoke_config(run, "optim.lr=inf", "trainer.save_every=1")
    set_seed(cfg.trainer.seed)
    run.mkdir()
    with pytest.raises(DivergedError, match="no checkpoint was saved before it") as error:
        build_trainer(cfg, run, make_accelerator(cfg, run)).fit()
    assert "lower optim.lr" in str(error.value) and "\n" not in str(error.value)
    assert list_checkpoints(run) == [] and latest_checkpoint(run) is None
    assert not list((run / "checkpoints").glob(".tmp_*"))


@pytest.mark.slow
def test_an_exploding_lr_leaves_only_finite_checkpoints_and_a_latest_that_loads(
    tmp_path, smoke_config
):
    run = tmp_path / "run"
    common = ("optim.lr=1e3", "trainer.max_steps=8", "trainer.save_every=1")
    try:
        train(smoke_config(run, *common, "trainer.keep_last=2"), run)
    except DivergedError as error:  # the loss or the weights went non-finite: which is fine
        assert f"the last good checkpoint is {latest_checkpoint(run)};" in str(error)
    assert list_checkpoints(run)
    for ckpt in list_checkpoints(run):
        assert_all_finite(ckpt)
    cfg = smoke_config(run, *common, "trainer.resume=true")
    trainer = build_trainer(cfg, run, make_accelerator(cfg, run))
    trainer.resume()
    assert trainer.state.step == int(latest_checkpoint(run).name.removeprefix("step_"))


def test_stale_temporary_folders_are_removed_at_start(tmp_path, smoke_config):
    run = tmp_path / "run"
    first = run / "checkpoints" / ".tmp_step_0000004"  # a fresh run's first save was cut
    first.mkdir(parents=True)
    train(smoke_config(run, "trainer.max_steps=2"), run)
    assert not first.exists()
    stale = run / "checkpoints" / ".tmp_step_0000004"  # and the resumed run's
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    train(smoke_config(run, "trainer.max_steps=3", "trainer.resume=true"), run)
    assert not stale.exists()
    assert [p.name for p in list_checkpoints(run)] == ["step_0000002", "step_0000003"]


@pytest.mark.dist
@pytest.mark.slow
def test_a_nan_loss_on_one_of_two_processes_stops_both_with_one_message(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "DINO_MX_TEST_NAN_RANK": "1",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    worker = [str(ROOT / "tests/engine/dist_worker.py"), str(tmp_path / "run"), str(tmp_path)]
    start = time.monotonic()
    result = subprocess.run(
        [*cmd, *worker], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    messages = [(tmp_path / f"error{rank}.txt").read_text() for rank in (0, 1)]
    assert (
        messages[0]
        == messages[1]
        == (
            "the loss is not finite at step 1 (on at least one process); no checkpoint was saved "
            "before it; lower optim.lr or raise optim.warmup_ratio"
        )
    )
    assert time.monotonic() - start < 120
    assert not (tmp_path / "rank0.pt").exists()  # neither rank went on training

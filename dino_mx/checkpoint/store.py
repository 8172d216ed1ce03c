"""Saving the full training state atomically, and restoring it to resume bit for bit.

Before anything is written, every tensor of the student, teacher and optimiser is checked
finite on every process (:mod:`.finite`): a diverged step is never saved. A checkpoint is
written into a hidden temporary folder, each file fsynced, and renamed into place only once
every process has finished writing; ``latest`` is replaced atomically after that, so a crash
during a save leaves the previous checkpoint untouched and ``latest`` pointing at it. Leftover
temporary folders are removed when a run starts (:func:`~.listing.remove_temporaries`). Rotation
keeps the newest ``keep_last`` and whatever the caller spares (the best checkpoint, :mod:`.best`).
The files and their contents are listed in :mod:`.format`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator

from dino_mx.checkpoint.finite import check_finite
from dino_mx.checkpoint.format import (
    CHECKPOINTS,
    CONFIG_FILE,
    LATEST,
    LOSS_FILE,
    OPTIMIZER_JSON,
    OPTIMIZER_TENSORS,
    STUDENT_FILE,
    TEACHER_FILE,
    TRAIN_STATE_FILE,
    rng_files,
    step_name,
    temporary_name,
)
from dino_mx.checkpoint.io import (
    flatten_optimizer,
    fsync_path,
    get_rng_state,
    read_checkpoint_file,
    set_rng_state,
    unflatten_optimizer,
    write_json,
    write_tensors,
    write_text_atomic,
)
from dino_mx.checkpoint.legacy import refuse_legacy
from dino_mx.checkpoint.listing import latest_checkpoint, list_checkpoints

log = logging.getLogger(__name__)


class Stateful(Protocol):
    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any], /) -> Any: ...


class BaseLink(Protocol):
    """What a checkpoint stores by reference (``adapter=lora|freeze``: RUN/base)."""

    def write_reference(self, ckpt_dir: Path) -> None: ...

    def check_reference(self, ckpt_dir: Path) -> None: ...


class TrainState:
    """The optimiser-step counter, saved with every checkpoint."""

    def __init__(self, step: int = 0):
        self.step = step


@dataclass
class CheckpointParts:
    """Everything a checkpoint holds. ``student`` / ``teacher``: the unwrapped modules (or
    views of them without the frozen base); ``loss``: the module holding the centres."""

    student: Stateful
    teacher: Stateful
    loss: Stateful
    optimizer: torch.optim.Optimizer
    train_state: TrainState
    base: BaseLink | None = None


def _write_state(folder: Path, parts: CheckpointParts, acc: Accelerator, tensors: dict) -> None:
    """Every process writes its RNG state; the main process writes the rest."""
    rng, rng_rest = get_rng_state()
    rng_tensors, rng_json = rng_files(acc.process_index)
    write_tensors(folder / rng_tensors, rng)
    write_json(folder / rng_json, rng_rest)
    if not acc.is_main_process:
        return
    write_tensors(folder / STUDENT_FILE, tensors["student"])
    write_tensors(folder / TEACHER_FILE, tensors["teacher"])
    write_tensors(folder / LOSS_FILE, tensors["loss"])
    write_tensors(folder / OPTIMIZER_TENSORS, tensors["optimizer"])
    write_json(folder / OPTIMIZER_JSON, tensors["optimizer_rest"])
    train_state: dict[str, Any] = {"step": parts.train_state.step, "accelerator_step": acc.step}
    if acc.scaler is not None:  # fp16: the dynamic loss scale
        train_state["scaler"] = acc.scaler.state_dict()
    write_json(folder / TRAIN_STATE_FILE, train_state)
    if parts.base is not None:
        parts.base.write_reference(folder)


def save_checkpoint(
    accelerator: Accelerator,
    run_dir: Path,
    parts: CheckpointParts,
    config_yaml: str,
    keep_last: int = 2,
    *,
    keep: Sequence[Path] = (),
) -> Path:
    """Save the full training state at ``parts.train_state.step``; every process must call this.

    Rotation spares the folders in ``keep`` (the best checkpoint) and keeps the ``keep_last``
    most recent of the others (0 keeps all), never the one just written.

    Raises:
        DivergedError: A student, teacher or optimiser tensor is not finite on some process;
            nothing was written and ``latest`` still names the last good checkpoint.
    """
    step = parts.train_state.step
    root = run_dir / CHECKPOINTS
    # Every process asks for every state: a sharded (FSDP) module gathers its shards then.
    opt_tensors, opt_rest = flatten_optimizer(parts.optimizer.state_dict())
    tensors = {
        "student": dict(parts.student.state_dict()),
        "teacher": dict(parts.teacher.state_dict()),
        "loss": dict(parts.loss.state_dict()),
        "optimizer": opt_tensors,
        "optimizer_rest": opt_rest,
    }
    named = {k: tensors[k].values() for k in ("student", "teacher", "optimizer")}
    check_finite(named, step, latest_checkpoint(run_dir), accelerator.device)
    final = root / step_name(step)
    tmp = root / temporary_name(step)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)  # every process writes its RNG state here
    accelerator.wait_for_everyone()
    _write_state(tmp, parts, accelerator, tensors)
    accelerator.wait_for_everyone()  # every file written and fsynced
    if accelerator.is_main_process:
        write_text_atomic(tmp / CONFIG_FILE, config_yaml)  # also fsyncs the folder
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_path(root)
        write_text_atomic(root / LATEST, final.name)
        if keep_last > 0:
            spared = {Path(k).resolve() for k in keep}
            others = [c for c in list_checkpoints(run_dir) if c.resolve() not in spared]
            for old in others[:-keep_last]:
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, ckpt_dir: Path, parts: CheckpointParts) -> None:
    """Restore ``parts`` and this process's random generators from ``ckpt_dir``.

    Raises:
        LegacyCheckpointError: ``ckpt_dir`` is in the older pickle format (nothing is loaded).
        FileNotFoundError: A file of the checkpoint is missing.
    """
    refuse_legacy(ckpt_dir)
    if parts.base is not None:
        parts.base.check_reference(ckpt_dir)
    parts.student.load_state_dict(read_checkpoint_file(ckpt_dir / STUDENT_FILE))
    parts.teacher.load_state_dict(read_checkpoint_file(ckpt_dir / TEACHER_FILE))
    parts.loss.load_state_dict(read_checkpoint_file(ckpt_dir / LOSS_FILE))
    optimizer = unflatten_optimizer(
        read_checkpoint_file(ckpt_dir / OPTIMIZER_TENSORS),
        read_checkpoint_file(ckpt_dir / OPTIMIZER_JSON),
    )
    parts.optimizer.load_state_dict(optimizer)
    train_state = read_checkpoint_file(ckpt_dir / TRAIN_STATE_FILE)
    parts.train_state.step = int(train_state["step"])
    accelerator.step = int(train_state.get("accelerator_step", 0))
    if accelerator.scaler is not None and "scaler" in train_state:
        accelerator.scaler.load_state_dict(train_state["scaler"])
    rng_tensors, rng_json = (ckpt_dir / name for name in rng_files(accelerator.process_index))
    if rng_tensors.is_file():
        set_rng_state(read_checkpoint_file(rng_tensors), read_checkpoint_file(rng_json))
    else:  # another number of processes: the run continues, but not bit for bit
        log.warning("%s is missing: random generators not restored", rng_tensors)

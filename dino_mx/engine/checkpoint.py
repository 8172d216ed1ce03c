"""Atomic, resumable checkpoints in safetensors and JSON, written and read by dino-mx.

Layout of a run directory::

    RUN/config.yaml                      resolved config of the latest (re)start
    RUN/checkpoints/step_0000300/        one folder per save:
        model.safetensors                  the student (backbone + head)
        teacher.safetensors                the EMA teacher's state dict, same names
        loss.safetensors                   the loss state: teacher centres (dinov1 `center`;
                                           dinov2 `dino.center`, `ibot.center`)
        optimizer.safetensors              the optimiser's tensors, `state.{param_index}.{name}`
        optimizer.json                     its `param_groups` and non-tensor values
        rng_state_{i}.safetensors          process i's torch CPU (and CUDA) generator states
        rng_state_{i}.json                 process i's Python and NumPy generator states
        train_state.json                   {"step": 300, ...}: the optimiser-step counter
        config.yaml                        the resolved config it was trained with
        base.json                          adapter=lora/freeze only: the frozen weights are not
                                           in model.safetensors / teacher.safetensors but in
                                           RUN/base (see dino_mx.engine.frozen_base)
    RUN/checkpoints/latest               name of the last complete checkpoint

Nothing here is a pickle, so loading a checkpoint someone shared cannot run code; a folder in
the older format (``custom_checkpoint_*.pkl``, ``optimizer.bin``) is refused, never unpickled.
Before anything is written, every tensor of the student, teacher and optimiser is checked
finite on every process (:mod:`dino_mx.engine.divergence`): a diverged step is never saved.
A checkpoint is written into a hidden temporary folder, each file fsynced, and renamed into
place only once every process has finished writing; ``latest`` is replaced atomically after
that, so a crash during a save leaves the previous checkpoint untouched and ``latest`` pointing
at it. Leftover temporary folders are removed when a run starts (:func:`remove_temporaries`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator

from dino_mx.engine.divergence import check_finite
from dino_mx.engine.state_io import (
    flatten_optimizer,
    fsync_path,
    get_rng_state,
    read_json,
    read_tensors,
    set_rng_state,
    unflatten_optimizer,
    write_json,
    write_tensors,
    write_text_atomic,
)

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LATEST = "latest"
TMP_PREFIX = ".tmp_step_"
STUDENT_FILE = "model.safetensors"
COMPONENTS = {
    "teacher": "teacher.safetensors",
    "loss": "loss.safetensors",
    "train_state": "train_state.json",
}
LEGACY = ("*.pkl", "*.bin")  # what Accelerate's save_state wrote before
LEGACY_COMPONENTS = {name: f"custom_checkpoint_{i}.pkl" for i, name in enumerate(COMPONENTS)}


class LegacyCheckpointError(ValueError):
    """A checkpoint folder in the older, pickle-based format."""


def legacy_message(file: Path, what: str) -> str:
    """One line refusing ``file``, a pickle of an older dino-mx, for ``what``."""
    return (
        f"{file}: written by an older dino-mx as a pickle, which could run code when loaded; "
        f"{what} (the student, model.safetensors, can still be evaluated with --which student)"
    )


def refuse_legacy(ckpt_dir: Path, what: str = "this checkpoint cannot be resumed safely") -> None:
    """Raise :class:`LegacyCheckpointError` if ``ckpt_dir`` holds a pickle file."""
    found = sorted(p for pattern in LEGACY for p in Path(ckpt_dir).glob(pattern))
    if found:
        raise LegacyCheckpointError(legacy_message(found[0], what))


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
    write_tensors(folder / f"rng_state_{acc.process_index}.safetensors", rng)
    write_json(folder / f"rng_state_{acc.process_index}.json", rng_rest)
    if not acc.is_main_process:
        return
    write_tensors(folder / STUDENT_FILE, tensors["student"])
    write_tensors(folder / COMPONENTS["teacher"], tensors["teacher"])
    write_tensors(folder / COMPONENTS["loss"], dict(parts.loss.state_dict()))
    write_tensors(folder / "optimizer.safetensors", tensors["optimizer"])
    write_json(folder / "optimizer.json", tensors["optimizer_rest"])
    train_state: dict[str, Any] = {"step": parts.train_state.step, "accelerator_step": acc.step}
    if acc.scaler is not None:  # fp16: the dynamic loss scale
        train_state["scaler"] = acc.scaler.state_dict()
    write_json(folder / COMPONENTS["train_state"], train_state)
    if parts.base is not None:
        parts.base.write_reference(folder)


def save_checkpoint(
    accelerator: Accelerator,
    run_dir: Path,
    parts: CheckpointParts,
    config_yaml: str,
    keep_last: int = 2,
) -> Path:
    """Save the full training state at ``parts.train_state.step``; every process must call this.

    Keeps the ``keep_last`` most recent checkpoints (0 keeps all), never the one just written.

    Raises:
        DivergedError: A student, teacher or optimiser tensor is not finite on some process;
            nothing was written and ``latest`` still names the last good checkpoint.
    """
    step = parts.train_state.step
    root = run_dir / CHECKPOINTS
    opt_tensors, opt_rest = flatten_optimizer(parts.optimizer.state_dict())
    tensors = {
        "student": dict(parts.student.state_dict()),
        "teacher": dict(parts.teacher.state_dict()),
        "optimizer": opt_tensors,
        "optimizer_rest": opt_rest,
    }
    named = {k: tensors[k].values() for k in ("student", "teacher", "optimizer")}
    check_finite(named, step, latest_checkpoint(run_dir), accelerator.device)
    final = root / f"step_{step:07d}"
    tmp = root / f"{TMP_PREFIX}{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)  # every process writes its RNG state here
    accelerator.wait_for_everyone()
    _write_state(tmp, parts, accelerator, tensors)
    accelerator.wait_for_everyone()  # every file written and fsynced
    if accelerator.is_main_process:
        write_text_atomic(tmp / "config.yaml", config_yaml)  # also fsyncs the folder
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_path(root)
        write_text_atomic(root / LATEST, final.name)
        if keep_last > 0:
            for old in list_checkpoints(run_dir)[:-keep_last]:
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _read(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint is incomplete")
    return read_json(path) if path.suffix == ".json" else read_tensors(path)


def load_checkpoint(accelerator: Accelerator, ckpt_dir: Path, parts: CheckpointParts) -> None:
    """Restore ``parts`` and this process's random generators from ``ckpt_dir``.

    Raises:
        LegacyCheckpointError: ``ckpt_dir`` is in the older pickle format (nothing is loaded).
        FileNotFoundError: A file of the checkpoint is missing.
    """
    refuse_legacy(ckpt_dir)
    if parts.base is not None:
        parts.base.check_reference(ckpt_dir)
    parts.student.load_state_dict(_read(ckpt_dir / STUDENT_FILE))
    parts.teacher.load_state_dict(_read(ckpt_dir / COMPONENTS["teacher"]))
    parts.loss.load_state_dict(_read(ckpt_dir / COMPONENTS["loss"]))
    optimizer = unflatten_optimizer(
        _read(ckpt_dir / "optimizer.safetensors"), _read(ckpt_dir / "optimizer.json")
    )
    parts.optimizer.load_state_dict(optimizer)
    train_state = _read(ckpt_dir / COMPONENTS["train_state"])
    parts.train_state.step = int(train_state["step"])
    accelerator.step = int(train_state.get("accelerator_step", 0))
    if accelerator.scaler is not None and "scaler" in train_state:
        accelerator.scaler.load_state_dict(train_state["scaler"])
    rng = ckpt_dir / f"rng_state_{accelerator.process_index}.safetensors"
    if rng.is_file():
        set_rng_state(_read(rng), _read(rng.with_suffix(".json")))
    else:  # another number of processes: the run continues, but not bit for bit
        log.warning("%s is missing: random generators not restored", rng)


def remove_temporaries(run_dir: str | Path) -> None:
    """Delete temporary folders left by saves that were interrupted (main process only)."""
    root = Path(run_dir) / CHECKPOINTS
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        log.info("removing %s, left by an interrupted save", tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if p.is_dir())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint named by ``latest``, else the newest complete one, else None."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if named.is_dir():
            return named
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory or a checkpoint folder -> the checkpoint folder."""
    path = Path(path)
    if (path / STUDENT_FILE).is_file() or (path / COMPONENTS["train_state"]).is_file():
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(
            f"no checkpoint in {path}: expected {path / CHECKPOINTS}/step_*/ (a run directory) "
            "or a checkpoint folder holding model.safetensors"
        )
    return ckpt


def load_component(ckpt_dir: str | Path, name: str) -> Any:
    """One part of a checkpoint without the trainer: ``teacher`` or ``loss`` (a state dict of
    tensors) or ``train_state`` (a dict, ``step`` among its keys).

    Raises:
        LegacyCheckpointError: The checkpoint holds this part only as an older pickle file.
    """
    if name not in COMPONENTS:
        raise ValueError(f"unknown component '{name}'; valid choices: {', '.join(COMPONENTS)}")
    file = Path(ckpt_dir) / COMPONENTS[name]
    legacy = Path(ckpt_dir) / LEGACY_COMPONENTS[name]
    if not file.is_file() and legacy.is_file():
        raise LegacyCheckpointError(legacy_message(legacy, f"dino-mx no longer reads its {name}"))
    return _read(file)


def checkpoint_step(ckpt_dir: Path) -> int:
    """The optimiser step a checkpoint was saved at: ``train_state.json``, else its name."""
    file = ckpt_dir / COMPONENTS["train_state"]
    if file.is_file():
        return int(read_json(file)["step"])
    return int(ckpt_dir.name.removeprefix("step_"))

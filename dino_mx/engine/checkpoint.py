"""Atomic, resumable checkpoints on top of ``Accelerator.save_state``.

Layout of a run directory::

    RUN/config.yaml                      resolved config of the latest (re)start
    RUN/checkpoints/step_0000300/        one Accelerate state folder per save:
        model.safetensors                  the student (backbone + head)
        optimizer.bin, random_states_*.pkl
        custom_checkpoint_0.pkl            the EMA teacher's state dict  (CUSTOM_OBJECTS order)
        custom_checkpoint_1.pkl            the loss state: teacher centres (dinov1 `center`;
                                           dinov2 `dino.center`, `ibot.center`)
        custom_checkpoint_2.pkl            the train state (step)
        config.yaml                        the resolved config it was trained with
        base.json                          adapter=lora/freeze only: the frozen weights are not
                                           in model.safetensors / the teacher file but in RUN/base
                                           (see dino_mx.engine.frozen_base)
    RUN/checkpoints/latest               name of the last complete checkpoint

A checkpoint is written into a hidden temporary folder and renamed into place only once every
process has finished writing, and ``latest`` is replaced atomically after that, so a crash during
a save leaves the previous checkpoint untouched and ``latest`` pointing at it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

CUSTOM_OBJECTS = ("teacher", "loss", "train_state")
CHECKPOINTS = "checkpoints"
LATEST = "latest"


class TrainState:
    """The optimiser-step counter, saved with every checkpoint."""

    def __init__(self, step: int = 0):
        self.step = step

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(
    accelerator: Accelerator, run_dir: Path, step: int, config_yaml: str, keep_last: int = 2
) -> Path:
    """Save the full training state at ``step``; every process must call this.

    Keeps the ``keep_last`` most recent checkpoints (0 keeps all).
    """
    root = run_dir / CHECKPOINTS
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp_step_{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)  # every rank writes its RNG state here
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "config.yaml").write_text(config_yaml)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic(root / LATEST, final.name)
        if keep_last > 0:
            for old in list_checkpoints(run_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


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
    if (path / "model.safetensors").is_file() or (path / "train_state.json").is_file():
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(
            f"no checkpoint in {path}: expected {path / CHECKPOINTS}/step_*/ (a run directory) "
            "or a checkpoint folder holding model.safetensors"
        )
    return ckpt


def load_component(ckpt_dir: str | Path, name: str) -> dict[str, Any]:
    """Load one of :data:`CUSTOM_OBJECTS` (e.g. the teacher's state dict) without Accelerate."""
    if name not in CUSTOM_OBJECTS:
        raise ValueError(f"unknown component '{name}'; valid choices: {', '.join(CUSTOM_OBJECTS)}")
    file = Path(ckpt_dir) / f"custom_checkpoint_{CUSTOM_OBJECTS.index(name)}.pkl"
    return torch.load(file, map_location="cpu", weights_only=True)

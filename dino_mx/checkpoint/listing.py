"""Finding checkpoints: a run's complete ones, the latest, and one part of one without a trainer.

Only folders renamed into place by a finished save count (``step_*``); a ``.tmp_step_*`` folder
is an interrupted save and is never listed, only removed when a run starts. ``latest`` names the
last complete checkpoint; if it is missing or names a folder that is gone, the newest complete
one is used.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from dino_mx.checkpoint.format import (
    CHECKPOINTS,
    COMPONENTS,
    LATEST,
    LEGACY_COMPONENTS,
    STEP_PREFIX,
    STUDENT_FILE,
    TMP_PREFIX,
)
from dino_mx.checkpoint.io import read_checkpoint_file, read_json
from dino_mx.checkpoint.legacy import LegacyCheckpointError, legacy_message

log = logging.getLogger(__name__)


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
    return sorted(p for p in root.glob(f"{STEP_PREFIX}*") if p.is_dir())


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
            f"no checkpoint in {path}: expected {path / CHECKPOINTS}/{STEP_PREFIX}*/ (a run "
            f"directory) or a checkpoint folder holding {STUDENT_FILE}"
        )
    return ckpt


def is_run_or_checkpoint(path: Path) -> bool:
    """Whether ``path`` looks like a dino-mx run directory or one of its checkpoint folders
    (by name only: nothing is read)."""
    return (path / CHECKPOINTS).is_dir() or path.name.startswith(STEP_PREFIX)


def run_dir_of(ckpt_dir: Path) -> Path | None:
    """The run directory holding ``ckpt_dir`` (``RUN/checkpoints/step_*``), else None."""
    return ckpt_dir.parent.parent if ckpt_dir.parent.name == CHECKPOINTS else None


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
    return read_checkpoint_file(file)


def checkpoint_step(ckpt_dir: Path) -> int:
    """The optimiser step a checkpoint was saved at: ``train_state.json``, else its name."""
    file = ckpt_dir / COMPONENTS["train_state"]
    if file.is_file():
        return int(read_json(file)["step"])
    return int(ckpt_dir.name.removeprefix(STEP_PREFIX))

"""Finding checkpoints: a run's complete ones, the latest, the one a reader uses, and one part of
one without a trainer.

Only folders renamed into place by a finished save count (``step_*``); a ``.tmp_step_*`` folder
is an interrupted save and is never listed, only removed when a run starts. ``latest`` names the
last complete checkpoint; if it is missing or names a folder that is gone, the newest complete
one is used. Readers of a run directory (evaluation, export, a distillation teacher) take its
best checkpoint (:mod:`.best`) when it has one, else the latest (:func:`choose_checkpoint`);
resuming takes the latest.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dino_mx.checkpoint.best import BestRecord, read_best
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
PREFER = ("best", "latest")  # which checkpoint of a run directory a reader takes


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


@dataclass(frozen=True)
class CheckpointChoice:
    """The checkpoint folder a reader uses, and why.

    Attributes:
        folder: The ``step_*`` folder.
        choice: ``best`` or ``latest`` (of a run directory), ``folder`` (named directly).
        reason: One line for the user: which checkpoint, and why that one.
    """

    folder: Path
    choice: str
    reason: str


def _no_best(record: BestRecord | None) -> str:
    if record is None:
        return "no best checkpoint: the run had no periodic evaluation, trainer.eval_every=0"
    return f"its best checkpoint {record.checkpoint} is gone"


def choose_checkpoint(path: str | Path, prefer: str = "best") -> CheckpointChoice:
    """The checkpoint a reader of ``path`` uses: a checkpoint folder is itself; a run directory
    gives its best checkpoint (``best.json``) if it has one and ``prefer`` is ``best``, else its
    latest. The choice of a run directory's checkpoint is logged with its reason.

    Raises:
        ValueError: ``prefer`` is neither ``best`` nor ``latest``.
        FileNotFoundError: ``path`` is neither a checkpoint folder nor a run with checkpoints.
    """
    if prefer not in PREFER:
        valid = ", ".join(PREFER)
        raise ValueError(f"unknown checkpoint choice '{prefer}'; valid choices: {valid}")
    path = Path(path)
    if (path / STUDENT_FILE).is_file() or (path / COMPONENTS["train_state"]).is_file():
        return CheckpointChoice(path, "folder", f"using the checkpoint folder {path}")
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(
            f"no checkpoint in {path}: expected {path / CHECKPOINTS}/{STEP_PREFIX}*/ (a run "
            f"directory) or a checkpoint folder holding {STUDENT_FILE}"
        )
    record = read_best(path) if prefer == "best" else None
    if record is not None and (best := record.folder(path)).is_dir():
        last = (
            "also the latest"
            if best == latest
            else f"the last one is {latest.name}: --checkpoint latest or its folder"
        )
        reason = f"using the best checkpoint {best.name} of {path} ({record.describe()}; {last})"
        choice = CheckpointChoice(best, "best", reason)
    else:
        why = "--checkpoint latest" if prefer == "latest" else _no_best(record)
        reason = f"using the latest checkpoint {latest.name} of {path} ({why})"
        choice = CheckpointChoice(latest, "latest", reason)
    log.info("%s", choice.reason)
    return choice


def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A run directory (its best checkpoint, else its latest; ``prefer="latest"``: its latest)
    or a checkpoint folder -> the checkpoint folder, as :func:`choose_checkpoint` picks it."""
    return choose_checkpoint(path, prefer).folder


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

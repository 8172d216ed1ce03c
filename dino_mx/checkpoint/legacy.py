"""Checkpoints of older dino-mx versions, pickles written by Accelerate's ``save_state``: refused.

Unpickling a file someone shared can run arbitrary code, so a folder holding ``*.pkl`` or
``*.bin`` files is never loaded; the error names the file and what still works. Only the
student, ``model.safetensors``, was data then too, so it can still be evaluated.
"""

from __future__ import annotations

from pathlib import Path

from dino_mx.checkpoint.format import LEGACY


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

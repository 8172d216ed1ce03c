"""Checkpoints: the on-disk format of a run, written by the trainer and read by everything else.

Below both the training loop (which saves and resumes through :mod:`.store`) and evaluation,
export and distillation (which read a backbone through :mod:`.reader`), so neither has to
import the other. :mod:`.format` names every file; nothing in a checkpoint is a pickle. A run's
best checkpoint (:mod:`.best`, picked by its periodic evaluation) is what readers take first.
"""

from dino_mx.checkpoint.best import (
    BestRecord,
    BestTracker,
    best_checkpoint,
    read_best,
    write_best,
)
from dino_mx.checkpoint.finite import DivergedError, check_finite
from dino_mx.checkpoint.frozen_base import FrozenBase, read_base_reference
from dino_mx.checkpoint.legacy import LegacyCheckpointError, refuse_legacy
from dino_mx.checkpoint.listing import (
    PREFER,
    CheckpointChoice,
    checkpoint_step,
    choose_checkpoint,
    is_run_or_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_component,
    remove_temporaries,
    resolve_checkpoint,
    run_dir_of,
)
from dino_mx.checkpoint.reader import (
    WHICH,
    backbone_state,
    checkpoint_fingerprint,
    load_backbone_from_checkpoint,
    saved_config,
)
from dino_mx.checkpoint.store import CheckpointParts, TrainState, load_checkpoint, save_checkpoint

__all__ = [
    "PREFER",
    "WHICH",
    "BestRecord",
    "BestTracker",
    "CheckpointChoice",
    "CheckpointParts",
    "DivergedError",
    "FrozenBase",
    "LegacyCheckpointError",
    "TrainState",
    "backbone_state",
    "best_checkpoint",
    "check_finite",
    "checkpoint_fingerprint",
    "checkpoint_step",
    "choose_checkpoint",
    "is_run_or_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_backbone_from_checkpoint",
    "load_checkpoint",
    "load_component",
    "read_base_reference",
    "read_best",
    "refuse_legacy",
    "remove_temporaries",
    "resolve_checkpoint",
    "run_dir_of",
    "save_checkpoint",
    "saved_config",
    "write_best",
]

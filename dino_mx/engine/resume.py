"""Whether a run may start in its folder, and what of its history survives a resume.

:func:`check_start` runs before the Accelerator, the TensorBoard writer or any model exists, so a
refused start leaves the run folder untouched: a folder with checkpoints needs
``trainer.resume=true``, and a resumed checkpoint's ``config.yaml`` must agree with the new config
on everything that shapes the networks, their inputs and the data (:data:`MAY_CHANGE` lists what
may differ). :func:`truncate_history` drops the ``train_log.jsonl`` lines of steps the resumed
checkpoint did not reach, so each step is logged once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dino_mx.checkpoint.format import CONFIG_FILE
from dino_mx.checkpoint.io import write_text_atomic
from dino_mx.checkpoint.legacy import refuse_legacy
from dino_mx.checkpoint.listing import latest_checkpoint
from dino_mx.config import upgrade_saved_config
from dino_mx.errors import UserError

# Keys that may differ between a checkpoint's config and the config resuming it; every other key
# must match. Allowed: how long to train and how often to log, save and evaluate (the trainer
# section except the batch, accumulation and seed, which decide the data stream); the optimiser's
# values (resuming with a lower optim.lr is the remedy for a diverging run) except the layer-wise
# lr factors, which shape the parameter groups the optimiser state is saved in; where files are
# (paths, data.root: a moved run or data folder) and loader workers. Refused: model, adapter,
# method (heads, temperatures, momentum, losses), distill, data, and the crops' number and sizes.
# A prefix ending in "." covers its whole section.
MAY_CHANGE = (
    "trainer.",
    "optim.",
    "paths.",
    "data.root",
    "data.num_workers",
    "augment.backend",
    *("augment.hflip", "augment.vflip", "augment.color_jitter", "augment.brightness"),
    *("augment.contrast", "augment.saturation", "augment.hue", "augment.grayscale"),
    *("augment.blur", "augment.solarize", "augment.roi_prob", "augment.roi_jitter"),
)
MUST_MATCH = (
    *("trainer.batch_size", "trainer.grad_accum", "trainer.seed"),
    *("optim.layerwise_decay", "optim.patch_embed_lr_mult"),
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out |= _flatten(value, f"{prefix}{key}.")
        return out
    return {prefix[:-1]: tree}


def may_change(key: str) -> bool:
    """Whether ``key`` may differ between a checkpoint and the run resuming it."""
    if key in MUST_MATCH:
        return False
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in MAY_CHANGE)


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: OLD in the checkpoint, NEW now`` for each key that differs and may not.

    Args:
        old: The checkpoint's resolved config (its ``config.yaml``), as nested dicts.
        new: The resolved config of the run that resumes it.

    Keys in only one of them are not compared (a checkpoint written before a key existed).
    """
    a, b = _flatten(old), _flatten(new)
    return [
        f"{key}: {a[key]} in the checkpoint, {b[key]} now"
        for key in sorted(a.keys() & b.keys())
        if a[key] != b[key] and not may_change(key)
    ]


def check_start(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint to resume from (None: a fresh start), or a refusal as ``UserError``.

    Reads only files: call it before anything is written into ``run_dir``.
    """
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return None
    if not cfg.trainer.resume:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints ({ckpt.name}); pass trainer.resume=true "
            "to continue that run, or choose another paths.output_dir"
        )
    refuse_legacy(ckpt)  # a pickle is never loaded, and refused before anything is written
    saved = ckpt / CONFIG_FILE
    if not saved.is_file():
        raise UserError(f"{saved} is missing: cannot check that the checkpoint fits this config")
    # An older run's config in today's layout (keys since moved are compared at their new place).
    loaded = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
    old = upgrade_saved_config(loaded)  # type: ignore[arg-type]
    new = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    diffs = config_differences(old, new)  # type: ignore[arg-type]
    if diffs:
        raise UserError(
            f"cannot resume {ckpt} with a different config: {'; '.join(diffs)} (set them back, "
            "or train into another paths.output_dir)"
        )
    return ckpt


def truncate_history(path: Path, step: int) -> None:
    """Keep the lines of ``path`` (``train_log.jsonl``) logged before ``step``.

    Line ``{"step": s, ...}`` records update ``s`` (0-based); a checkpoint at ``step`` holds
    updates ``0 .. step - 1``, so the lines from ``step`` on were logged by an interrupted run and
    are logged again by the resumed one. The file is replaced atomically.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", -1) < step]
    if len(kept) == len(lines):
        return
    write_text_atomic(path, "".join(kept))

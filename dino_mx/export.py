"""``dino-mx export``: a trained backbone as a Hugging Face folder.

    dino-mx export --ckpt runs/pn --out exported/pn                 # the best checkpoint's teacher
    dino-mx export --ckpt runs/pn --out exported/pn --checkpoint latest   # the last checkpoint's
    dino-mx export --ckpt runs/pn/checkpoints/step_0000300 --out DIR --which student

The folder holds ``config.json`` and ``model.safetensors`` with any LoRA update merged into the
base weights, so ``transformers.AutoModel.from_pretrained(DIR)`` loads it with no dino-mx or
peft installed, and ``dino-mx train model.pretrained=DIR`` continues from it (another domain,
another adapter). ``dino_mx_export.json`` beside them says where it came from and the
normalisation and image size it was trained with, and ``README.md`` is the model card the
Hugging Face Hub shows (:mod:`dino_mx.model_card`): data, method, step, the run's evaluation
figures and how to load the folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from dino_mx.checkpoint import (
    PREFER,
    WHICH,
    choose_checkpoint,
    load_backbone_from_checkpoint,
    run_dir_of,
)
from dino_mx.errors import log_to_stderr, reports_errors
from dino_mx.model_card import DEFAULT_LICENSE, write_model_card
from dino_mx.models.adapters import build_adapter

log = logging.getLogger(__name__)
INFO_FILE = "dino_mx_export.json"


def export_checkpoint(
    ckpt: str | Path,
    out: str | Path,
    which: str = "teacher",
    license: str = DEFAULT_LICENSE,
    checkpoint: str = "best",
) -> Path:
    """Write the ``which`` backbone of ``ckpt`` to ``out`` with ``save_pretrained``.

    Args:
        ckpt: Run directory (its checkpoint chosen by ``checkpoint``) or a ``step_*``
            checkpoint folder.
        out: Folder to create; a previous export there is replaced atomically, any other
            non-empty folder is refused.
        which: ``teacher`` (the EMA network, what DINO evaluates) or ``student``.
        license: Licence identifier for the model card's front matter.
        checkpoint: Which checkpoint of a run directory: ``best`` (picked by its periodic k-NN;
            the latest when it has none) or ``latest``.

    Returns:
        The folder written.
    """
    chosen = choose_checkpoint(ckpt, checkpoint)  # logs which one, and why
    backbone, cfg, step = load_backbone_from_checkpoint(chosen.folder, which)
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not (out / INFO_FILE).is_file():
        raise FileExistsError(f"{out} exists and is not a dino-mx export: choose another --out")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    backbone.model.save_pretrained(tmp)  # config.json + model.safetensors
    info: dict[str, Any] = {
        "checkpoint": str(chosen.folder.resolve()),
        "checkpoint_choice": chosen.choice,
        "which": which,
        "step": step,
        "model": cfg.model.name,
        "adapter": build_adapter(cfg.get("adapter")).as_config(),
        "data": {"name": cfg.data.name, "mean": list(cfg.data.mean), "std": list(cfg.data.std)},
        "image_size": int(cfg.augment.global_size),
    }
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    write_model_card(tmp, cfg, info, run_dir_of(chosen.folder), license)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    how = f"the {chosen.choice} checkpoint " if chosen.choice != "folder" else ""
    log.info("exported the %s of %s%s (step %d) to %s", which, how, chosen.folder, step, out)
    return out


@reports_errors("dino-mx export")
def main(argv: list[str] | None = None) -> int:
    """Parse ``dino-mx export`` arguments and export; returns the exit status (2: user error)."""
    parser = argparse.ArgumentParser(
        prog="dino-mx export",
        description="Write a checkpoint's backbone (LoRA merged) as a Hugging Face folder.",
    )
    parser.add_argument("--ckpt", required=True, help="run directory or step_* folder")
    parser.add_argument("--out", required=True, help="output folder (AutoModel.from_pretrained)")
    parser.add_argument("--which", choices=WHICH, default="teacher", help="default: teacher")
    parser.add_argument(
        "--checkpoint",
        choices=PREFER,
        default="best",
        help="which checkpoint of a run directory: best (default; the one its periodic k-NN "
        "scored highest, trainer.best_metric, else the latest) or latest (the last one saved)",
    )
    parser.add_argument(
        "--license",
        default=DEFAULT_LICENSE,
        help=f"model card licence (Hub identifier; default {DEFAULT_LICENSE}, dino-mx's): "
        "check the base model's and the data's terms",
    )
    args = parser.parse_args(argv)
    log_to_stderr()
    out = export_checkpoint(args.ckpt, args.out, args.which, args.license, args.checkpoint)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The on-disk format of a dino-mx run: every file, folder and key name, spelled once here.

Layout of a run directory::

    RUN/config.yaml                      resolved config of the latest (re)start
    RUN/base/                            adapter=lora/freeze only: the frozen backbone, once per
        config.json, model.safetensors     run, as a Hugging Face folder (see .frozen_base)
    RUN/checkpoints/step_0000300/        one folder per save:
        model.safetensors                  the student (backbone + head)
        teacher.safetensors                the EMA teacher's state dict, same names
        loss.safetensors                   the objective's state: the teacher centres
                                           (`dino.center`, dinov2 also `ibot.center`), a
                                           distillation projector (`distill.projector.*`)
        optimizer.safetensors              the optimiser's tensors, `state.{param_index}.{name}`
        optimizer.json                     its `param_groups` and non-tensor values
        rng_state_{i}.safetensors          process i's torch CPU (and CUDA) generator states
        rng_state_{i}.json                 process i's Python and NumPy generator states
        train_state.json                   {"step": 300, ...}: the optimiser-step counter
        config.yaml                        the resolved config it was trained with
        base.json                          adapter=lora/freeze only: the frozen weights are not
                                           in model.safetensors / teacher.safetensors but in
                                           RUN/base, which this file names and hashes
    RUN/checkpoints/.tmp_step_0000300/   a save in progress, renamed to step_0000300 when complete
    RUN/checkpoints/latest               name of the last complete checkpoint
    RUN/checkpoints/best.json            trainer.eval_every > 0: the checkpoint whose periodic
                                           k-NN scored highest, {"checkpoint": "step_0000300",
                                           "step": 300, "metric": "knn/val_accuracy_k20",
                                           "value": 0.83}; rotation never deletes it, and eval /
                                           export read it before `latest` (see .best)

The backbone's weights are the ``backbone.model.*`` keys of the student and teacher state dicts
(a Hugging Face model inside :class:`~dino_mx.models.Backbone`); evaluation and export read
those. Nothing here is a pickle: an older folder holding ``*.pkl`` / ``*.bin`` files is refused
(:mod:`.legacy`), never unpickled.
"""

from __future__ import annotations

CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST = "best.json"
STEP_PREFIX = "step_"
TMP_PREFIX = ".tmp_step_"

STUDENT_FILE = "model.safetensors"
TEACHER_FILE = "teacher.safetensors"
LOSS_FILE = "loss.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
TRAIN_STATE_FILE = "train_state.json"
# What :func:`~dino_mx.checkpoint.listing.load_component` reads without a trainer.
COMPONENTS = {"teacher": TEACHER_FILE, "loss": LOSS_FILE, "train_state": TRAIN_STATE_FILE}

BASE_DIR = "base"
BASE_REF = "base.json"
BASE_WEIGHTS = "model.safetensors"  # of RUN/base, as save_pretrained names it

BACKBONE_PREFIX = "backbone.model."

LEGACY = ("*.pkl", "*.bin")  # what Accelerate's save_state wrote before
LEGACY_COMPONENTS = {name: f"custom_checkpoint_{i}.pkl" for i, name in enumerate(COMPONENTS)}


def step_name(step: int) -> str:
    """The folder name of the checkpoint saved at optimiser step ``step``."""
    return f"{STEP_PREFIX}{step:07d}"


def temporary_name(step: int) -> str:
    """The hidden folder a save at ``step`` writes into before it is complete."""
    return f"{TMP_PREFIX}{step:07d}"


def rng_files(process_index: int) -> tuple[str, str]:
    """(tensor file, JSON file) of one process's random generator states."""
    stem = f"rng_state_{process_index}"
    return f"{stem}.safetensors", f"{stem}.json"


def plain_key(key: str) -> str:
    """A state-dict key without the ``module.`` (DDP) / ``_orig_mod.`` (compile) wrappers."""
    return key.replace("_orig_mod.", "").removeprefix("module.")

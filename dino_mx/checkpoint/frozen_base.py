"""Frozen backbone weights stored once per run and referenced by every checkpoint.

With ``adapter=lora`` or ``adapter=freeze`` most of the backbone never changes. Instead of
writing it into every checkpoint twice (student and EMA teacher), a run keeps it once::

    RUN/base/config.json, model.safetensors   the backbone before the adapter was applied, exactly
                                              as training started (pretrained or random init,
                                              channel-adapted): a Hugging Face folder
    RUN/checkpoints/step_*/model.safetensors  the student's trainable weights: LoRA A/B or the
                                              unfrozen blocks, and the head
    RUN/checkpoints/step_*/teacher.safetensors the teacher's, same names
    RUN/checkpoints/step_*/base.json          {"path": "../../base", "sha256": ..., "frozen": [...]}

``base.json`` is the reference: the base folder relative to the checkpoint, the sha256 of its
weights (checked on load) and the parameter names the checkpoint leaves to it. A LoRA
checkpoint of DINOv2 ViT-S (r=8, query+value) holds 2 x 0.6 MB of adapters, not 2 x 88 MB.
Resuming reloads the base into the freshly built backbone, then the checkpoint the rest.
In memory the teacher shares the frozen tensors with the student
(``build_teacher(share_frozen=True)``), so they exist once there too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from dino_mx.checkpoint.format import (
    BACKBONE_PREFIX,
    BASE_DIR,
    BASE_REF,
    BASE_WEIGHTS,
    plain_key,
)
from dino_mx.checkpoint.io import fsync_path, read_json, write_json
from dino_mx.checkpoint.listing import latest_checkpoint
from dino_mx.models.backbone import load_pretrained_model


def frozen_backbone_names(student: nn.Module) -> frozenset[str]:
    """Names of the student's frozen backbone parameters: what the base provides."""
    return frozenset(
        plain_key(n)
        for n, p in student.named_parameters()
        if not p.requires_grad and BACKBONE_PREFIX in n
    )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


class WithoutFrozen:
    """Checkpoint adapter for a module: its state dict minus the names the base provides.

    ``load_state_dict`` insists that exactly those names are absent, so a checkpoint of
    another adapter or model fails loudly instead of loading half.
    """

    def __init__(self, module: nn.Module, frozen: frozenset[str]):
        self.module, self.frozen = module, frozen

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.module.state_dict().items() if k not in self.frozen}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        _load_checked(self.module, state, self.frozen)


def _load_checked(module: nn.Module, state: dict[str, Tensor], frozen: frozenset[str]) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = {plain_key(k) for k in missing}
    if unexpected or missing != frozen:
        raise KeyError(
            "checkpoint does not match this run's adapter: unexpected "
            f"{sorted(unexpected)[:5]}, missing {sorted(missing - frozen)[:5]}, "
            f"present but expected from the base {sorted(frozen - missing)[:5]}"
        )


class FrozenBase:
    """The frozen base of one run (``RUN/base``) and the checkpoint hooks that use it."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / BASE_DIR
        self.frozen: frozenset[str] = frozenset()
        self._sha: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha is None:
            self._sha = sha256_file(self.dir / BASE_WEIGHTS)
        return self._sha

    def attach(self, model: nn.Module, *, resume: bool, is_main: bool) -> None:
        """Before the adapter is applied: a fresh run (main process) writes ``RUN/base`` from
        ``model``; a resumed run loads it into ``model``. A run directory holding checkpoints
        without ``resume`` is left alone (the trainer refuses to overwrite it)."""
        has_checkpoints = latest_checkpoint(self.run_dir) is not None
        if has_checkpoints and resume:
            if not (self.dir / BASE_WEIGHTS).is_file():
                raise FileNotFoundError(
                    f"{self.dir} is missing: the checkpoints of {self.run_dir} store the frozen "
                    "backbone by reference to it"
                )
            # from_pretrained, not load_file: transformers 5 saves ViT weights under 4.x names.
            model.load_state_dict(load_pretrained_model(str(self.dir)).state_dict(), strict=True)
        elif not has_checkpoints and is_main:
            tmp = self.dir.with_name(f".{BASE_DIR}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            for file in [*tmp.iterdir(), tmp]:
                fsync_path(file)
            shutil.rmtree(self.dir, ignore_errors=True)
            os.replace(tmp, self.dir)
            fsync_path(self.run_dir)

    def install(
        self,
        student: nn.Module,
        teacher: nn.Module,
        state: Callable[[nn.Module], Any] | None = None,
    ) -> tuple[WithoutFrozen, WithoutFrozen]:
        """Call after the adapter is applied and the teacher built. Returns what to checkpoint
        in place of the (unwrapped) student and the teacher: both without the frozen weights.

        ``state`` maps a module to what gives its state dict (a sharded module's full state,
        :class:`dino_mx.engine.fsdp.FullState`); default: the module itself.
        """
        self.frozen = frozen_backbone_names(student)
        wrap = state or (lambda module: module)
        return WithoutFrozen(wrap(student), self.frozen), WithoutFrozen(wrap(teacher), self.frozen)

    def write_reference(self, ckpt_dir: Path) -> None:
        """Write ``base.json`` into a checkpoint folder (its final name is a sibling)."""
        ref = {
            "path": os.path.relpath(self.dir, ckpt_dir),
            "sha256": self.sha256,
            "frozen": sorted(self.frozen),
        }
        write_json(Path(ckpt_dir) / BASE_REF, ref)

    def check_reference(self, ckpt_dir: Path) -> None:
        """Before loading: the checkpoint was trained from this run's base.

        Raises:
            ValueError: It refers to another base (or to none: a full checkpoint).
        """
        ref = read_base_reference(Path(ckpt_dir), verify=False)
        if ref is None:
            raise ValueError(f"{ckpt_dir} holds every weight (no {BASE_REF}): not an adapter run's")
        if ref.sha256 != self.sha256:
            raise ValueError(f"{ckpt_dir} was trained from another base than {self.dir}")


@dataclass
class BaseReference:
    """A checkpoint's ``base.json``: the base folder, its weights' sha256, the names it holds
    (relative to ``Backbone.model``)."""

    path: Path
    sha256: str
    frozen: frozenset[str]


def read_base_reference(ckpt_dir: Path, verify: bool = True) -> BaseReference | None:
    """The base a checkpoint refers to, or None for a checkpoint that holds every weight.

    Raises:
        FileNotFoundError: The base folder is gone.
        ValueError: ``verify`` and the base's weights are not the ones trained from.
    """
    file = Path(ckpt_dir) / BASE_REF
    if not file.is_file():
        return None
    ref = read_json(file)
    path = (Path(ckpt_dir) / ref["path"]).resolve()
    if not (path / BASE_WEIGHTS).is_file():
        raise FileNotFoundError(f"{ckpt_dir} stores its frozen weights in {path}, which is missing")
    if verify and sha256_file(path / BASE_WEIGHTS) != ref["sha256"]:
        raise ValueError(f"{path} is not the base {ckpt_dir} was trained from (sha256 differs)")
    frozen = frozenset(
        k[len(BACKBONE_PREFIX) :] for k in ref["frozen"] if k.startswith(BACKBONE_PREFIX)
    )
    return BaseReference(path, ref["sha256"], frozen)

"""FSDP2 for DINO: the student and its EMA teacher sharded alike, checkpoints in full.

``trainer.fsdp=true`` (or ``accelerate launch --config_file configs/accelerate/fsdp.yaml``,
which Accelerate reports as ``DistributedType.FSDP``) shards with PyTorch's ``fully_shard``
(FSDP2): each transformer block is a unit, the :class:`~dino_mx.engine.learner.Learner` the
root (embeddings, final norm, heads, and any trainable objective term such as the distillation
projector). The same code runs on GPUs (NCCL) and on CPUs (gloo), which is how the tests drive
it: Accelerate does not offer FSDP without a GPU, so dino-mx never hands the model to
Accelerate's own FSDP wrapper, only the optimiser (``prepare_optimizer``), and uses it for the
process group, autocast, accumulation and logging.

Why FSDP2: it keeps parameter names (checkpoints, lr groups, freeze-last-layer and the EMA
match parameters by name), and frozen and trainable parameters may share a unit (LoRA,
freeze-N). Design choices:

- **EMA teacher**: a copy of the student made before sharding and sharded the same way, so
  each process updates its own shards with one ``torch._foreach_lerp_`` and no communication
  (:func:`dino_mx.engine.ema.ema_update`). Its root reshards after every forward: the teacher
  never runs backward, which is what reshards the student's root.
- **Centres, Sinkhorn-Knopp**: buffers, not sharded; their statistics are all-reduced as in
  DDP (:mod:`dino_mx.losses.centering`).
- **Distillation teacher**: replicated, not sharded (frozen and read every step: sharding it
  would add an all-gather per step to save the memory of weights only).
- **Checkpoints**: full state, gathered to the main process (``get_model_state_dict`` /
  ``get_optimizer_state_dict`` with ``full_state_dict``), written in exactly the single-process
  format — the optimiser state keyed by parameter index — so ``dino-mx eval`` / ``export`` read
  an FSDP run like any other and a run may resume with another number of processes. Every
  process reads the files on resume and keeps its own shards.
- **Periodic k-NN**: the teacher's full weights are gathered to the main process (one
  all-gather per evaluation, not per step) into an unsharded copy, which extracts and scores
  alone; a sharded forward on one process would wait forever for the others.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from dino_mx.models.blocks import block_prefix

log = logging.getLogger(__name__)

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def use_fsdp(requested: bool, accelerator: Accelerator) -> bool:
    """Shard when launched with Accelerate's FSDP config or asked (``trainer.fsdp``), with more
    than one process; one process has nothing to shard."""
    if not (requested or accelerator.distributed_type == DistributedType.FSDP):
        return False
    if accelerator.num_processes < 2:
        log.info("trainer.fsdp: one process, nothing to shard; training unsharded")
        return False
    return True


def _shard_blocks(network: nn.Module, mesh: Any) -> None:
    """``fully_shard`` each transformer block of the network's backbone (the wrap unit)."""
    model = network.backbone.model
    for block in model.get_submodule(block_prefix(model)):
        fully_shard(block, mesh=mesh)


def shard(learner: nn.Module, teacher: nn.Module, accelerator: Accelerator) -> None:
    """Shard the learner (student + objective) and the EMA teacher alike, in place.

    Call after the teacher is copied from the unsharded student and before the optimiser is
    built (sharding replaces every parameter by a DTensor of the same name).
    """
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    _shard_blocks(learner.student, mesh)
    fully_shard(learner, mesh=mesh)
    _shard_blocks(teacher, mesh)
    fully_shard(teacher, mesh=mesh, reshard_after_forward=True)


class FullState:
    """A sharded module's full state dict for checkpoints; every process must call both.

    ``state_dict`` gathers to the main process (plain CPU tensors; ``{}`` on the others);
    ``load_state_dict`` takes the full dict on every process and keeps each its shards.
    """

    def __init__(self, module: nn.Module):
        self.module = module

    def state_dict(self) -> dict[str, torch.Tensor]:
        return get_model_state_dict(self.module, options=FULL)

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> Any:
        options = StateDictOptions(full_state_dict=True, strict=strict)
        return set_model_state_dict(self.module, dict(state), options=options)


def _index_of(groups: list[dict]) -> dict[str, int]:
    """Parameter name -> its index in ``torch.optim``'s own state dict (groups in order)."""
    names = [name for group in groups for name in group["params"]]
    return {name: i for i, name in enumerate(names)}


class FullOptimizerState:
    """The optimiser's full state, keyed by parameter index as ``optimizer.state_dict()`` keys
    it in one process, so checkpoints of sharded and unsharded runs are the same files."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model = model
        self.optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrapper

    def state_dict(self) -> dict[str, Any]:
        full = get_optimizer_state_dict(self.model, self.optimizer, options=FULL)
        if not full:  # not the main process
            return {"state": {}, "param_groups": []}
        index = _index_of(full["param_groups"])
        groups = [{**g, "params": [index[n] for n in g["params"]]} for g in full["param_groups"]]
        return {"state": {index[n]: s for n, s in full["state"].items()}, "param_groups": groups}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        ids = {id(p): n for n, p in self.model.named_parameters()}
        order = [ids[id(p)] for g in self.optimizer.param_groups for p in g["params"]]
        if sorted(order) != sorted(names):
            raise ValueError("the optimiser does not hold exactly the trainable parameters")
        by_index = dict(enumerate(order))
        groups = [
            {**g, "params": [by_index[i] for i in g["params"]]} for g in state["param_groups"]
        ]
        named = {by_index[int(i)]: s for i, s in state["state"].items()}
        # Not strict: a parameter without state is legal (the heads' last layers have none
        # while freeze_last_layer drops their gradients), as torch.optim's own load allows.
        options = StateDictOptions(full_state_dict=True, strict=False)
        full = {"state": named, "param_groups": groups}
        set_optimizer_state_dict(self.model, self.optimizer, full, options=options)
        # The loader first gives every parameter a state (one zero-gradient step): drop those
        # the checkpoint had none for, or their first real update would count a step too many.
        for name, p in self.model.named_parameters():
            if name not in named:
                self.optimizer.state.pop(p, None)


class GatheredTeacher:
    """The EMA teacher's backbone, whole, on the main process, for the periodic evaluation.

    ``backbone()`` must be called on every process (it all-gathers the shards); it returns
    the unsharded copy on the main process and None on the others.
    """

    def __init__(self, teacher: nn.Module, accelerator: Accelerator):
        self.teacher = teacher
        self.copy = copy.deepcopy(teacher) if accelerator.is_main_process else None

    def backbone(self) -> nn.Module | None:
        state = get_model_state_dict(self.teacher, options=FULL)
        if self.copy is None:
            return None
        self.copy.load_state_dict(state)
        return self.copy.backbone

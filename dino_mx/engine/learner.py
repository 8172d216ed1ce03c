"""The module the optimiser trains and Accelerate wraps: the student network and the objective.

One forward is one micro-batch of the training step: the EMA teacher encodes the global crops
(no gradient, whole crops), the student every crop (masked, for iBOT), and the objective sums its
weighted terms. Keeping all three inside one ``forward`` is what DDP and FSDP need: every
trainable parameter — the student's and any term's (the distillation projector) — is used inside
the wrapped call, so gradients are reduced and shards gathered as those wrappers expect.
"""

from __future__ import annotations

import torch
from torch import nn

from dino_mx.data.views import N_GLOBAL, Views
from dino_mx.losses.objective import Objective, ObjectiveOutput
from dino_mx.models.multicrop import MultiCropModel


class Learner(nn.Module):
    """Args:
    student: The student network (backbone + heads); the EMA teacher is a copy of it.
    objective: The weighted loss terms (their state: centres, a distillation projector).
    """

    def __init__(self, student: MultiCropModel, objective: Objective):
        super().__init__()
        self.student = student
        self.objective = objective

    def forward(
        self, views: Views, teacher: nn.Module, teacher_temp: float, monitor: bool = False
    ) -> ObjectiveOutput:
        """The objective of one micro-batch.

        Args:
            views: Crops (B, C, H_i, W_i) each, global first; masks (B, N_GLOBAL, N) or None.
            teacher: The EMA teacher network (a :class:`MultiCropModel` like the student).
            teacher_temp: The teacher temperature of this step.
            monitor: Also compute the collapse monitors of the teacher's targets.
        """
        masks = views.flat_masks  # (N_GLOBAL * B, N), crop by crop
        with torch.no_grad():
            targets = teacher(views.crops[:N_GLOBAL], masks, mask_inputs=False)
        predictions = self.student(views.crops, masks, mask_inputs=True)
        return self.objective(predictions, targets, views, teacher_temp, monitor)

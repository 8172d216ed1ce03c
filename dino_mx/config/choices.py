"""The closed choices of the configuration, one string enum per option with a fixed set of values.

A field typed with one of these is checked by OmegaConf when Hydra composes the config, so
``trainer.on_collapse=halt`` fails there, naming the key and the valid values. OmegaConf looks a
value up by the member's *name*, so every member is named exactly as its value. Members are
strings (:class:`enum.StrEnum`): they compare, hash and format as the value, so code comparing
with ``"lora"`` and the ``config.yaml`` written beside each checkpoint read as before.
"""

from __future__ import annotations

import sys
from enum import Enum

# What ``dino_mx.config`` re-exports: every choice, named once here.
__all__ = [
    "AdapterName",
    "Arch",
    "Backend",
    "Centering",
    "DataFormat",
    "DistillLoss",
    "DistillName",
    "LoRABias",
    "MethodName",
    "OnBadImage",
    "OnCollapse",
    "OptimName",
    "Precision",
    "StrEnum",
    "Views",
]

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10: the same behaviour, spelled out

    class StrEnum(str, Enum):
        """A string enum: members are their values wherever a string is expected."""

        __str__ = str.__str__
        __format__ = str.__format__

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last: list) -> str:
            return name.lower()


# The functional form lets a member be named as its value even where that is a Python keyword
# ("raise"); its values are the names.
DataFormat = StrEnum("DataFormat", "medmnist npz imagefolder roi_npz coco")
OnBadImage = StrEnum("OnBadImage", "raise skip")
Arch = StrEnum("Arch", "vit dinov2")
AdapterName = StrEnum("AdapterName", "full lora freeze")
LoRABias = StrEnum("LoRABias", "none all lora_only")
Backend = StrEnum("Backend", "per_sample batched")
MethodName = StrEnum("MethodName", "dinov1 dinov2")
Centering = StrEnum("Centering", "softmax_center sinkhorn_knopp")
DistillName = StrEnum("DistillName", "none teacher")
DistillLoss = StrEnum("DistillLoss", "cosine smooth_l1 cross_entropy")
Views = StrEnum("Views", "global local all")
OptimName = StrEnum("OptimName", "adamw")
Precision = StrEnum("Precision", "auto fp32 bf16 fp16")
OnCollapse = StrEnum("OnCollapse", "warn stop off")

"""Typed schemas of the training configuration, registered with Hydra's ConfigStore.

The YAML files under ``configs/`` hold the values and the tuning advice; the dataclasses of
:mod:`~dino_mx.config.schemas` hold the shape, and :mod:`~dino_mx.config.choices` the closed
sets of values. ``configs/train.yaml`` lists ``train_schema`` first in its defaults and each
option's YAML its own schema, so every group option and command-line override is merged into a
struct config: an unknown key (``optim.lrr=1``), a value of the wrong type (``optim.lr=abc``) or
outside its choices (``trainer.on_collapse=halt``) fails and names the key. Hydra's ``+key=``
adds keys even to a struct config, so :mod:`dino_mx.engine.validate` checks the composed config
against these dataclasses, and the value ranges, before training starts.
"""

from dino_mx.config import choices

# The closed choices are re-exported whole: their list lives once, in choices.__all__.
from dino_mx.config.choices import *  # noqa: F403
from dino_mx.config.compose import (
    apply_overrides,
    compose_train_config,
    config_dir,
    saved_schema,
    upgrade_saved_config,
)
from dino_mx.config.keys import schema_fields, unknown_key_message
from dino_mx.config.schemas import (
    OPTION_SCHEMAS,
    AdapterConfig,
    AugmentConfig,
    DataConfig,
    DINOv1Config,
    DINOv2Config,
    DistillConfig,
    FreezeConfig,
    FullAdapterConfig,
    HeadConfig,
    IBOTConfig,
    LabelGuidedConfig,
    LoRAConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    PathsConfig,
    TrainConfig,
    TrainerConfig,
    option_schema,
    register_schemas,
)

__all__ = [
    *choices.__all__,
    "OPTION_SCHEMAS",
    "AdapterConfig",
    "AugmentConfig",
    "DINOv1Config",
    "DINOv2Config",
    "DataConfig",
    "DistillConfig",
    "FreezeConfig",
    "FullAdapterConfig",
    "HeadConfig",
    "IBOTConfig",
    "LabelGuidedConfig",
    "LoRAConfig",
    "MethodConfig",
    "ModelConfig",
    "OptimConfig",
    "PathsConfig",
    "TrainConfig",
    "TrainerConfig",
    "apply_overrides",
    "compose_train_config",
    "config_dir",
    "option_schema",
    "register_schemas",
    "saved_schema",
    "schema_fields",
    "unknown_key_message",
    "upgrade_saved_config",
]

"""The shape of the training configuration: one dataclass per config group, and one per option
of the groups whose options hold different keys (``adapter``, ``method``, ``augment``).

The YAML files under ``configs/`` hold the values and the tuning advice. Each option's YAML
names its schema first in its defaults list (``/schema/adapter@_here_: lora``), so Hydra merges
the option into a node of that schema: ``adapter=lora adapter.num_layers=3`` fails because
``num_layers`` is a key of ``adapter=freeze`` only, and DINOv1 has no iBOT or KoLeo keys at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from dino_mx.config.choices import (
    AdapterName,
    Arch,
    Backend,
    Centering,
    DataFormat,
    DistillLoss,
    DistillName,
    LoRABias,
    MethodName,
    OnBadImage,
    OnCollapse,
    OptimName,
    Precision,
    Views,
)


@dataclass
class DataConfig:
    name: str = MISSING
    format: DataFormat = DataFormat.medmnist
    root: str | None = None  # folder holding the files; null = the package's bundled data
    flag: str | None = None  # MedMNIST flag (pathmnist, pneumoniamnist, ...), format=medmnist
    size: int = 28  # MedMNIST image size: 28, 64, 128 or 224
    file: str | None = None  # .npz file name inside root (format=npz) or folder (imagefolder)
    # null: follow the data (any C >= 1); a number converts: grey -> C repeats, RGB -> 1 luma
    channels: int | None = None
    mean: list[float] = field(default_factory=lambda: [0.5])  # 1 value (every channel) or C
    std: list[float] = field(default_factory=lambda: [0.5])  # 1 value (every channel) or C
    num_workers: int = 2
    roi_names: list[str] | None = None  # names of the region classes (roi_npz; coco has its own)
    # An image file that cannot be decoded (imagefolder, coco): raise = stop, naming the file;
    # skip = log it once per loader worker and use the next readable image in its place.
    # `dino-mx data check DIR` lists every unreadable file before a long run.
    on_bad_image: OnBadImage = OnBadImage["raise"]


@dataclass
class ModelConfig:
    name: str = MISSING
    pretrained: str | None = None  # hub name or local folder; null = random init from the preset
    arch: Arch = Arch.vit  # random init only; pretrained reads config.json
    patch_size: int = 16
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    image_size: int = 224  # position-embedding grid; other sizes are interpolated
    drop_path_rate: float = 0.0


@dataclass
class AdapterConfig:
    """What every ``adapter`` option has; each option's own keys are on its schema below."""

    name: AdapterName = MISSING


@dataclass
class FullAdapterConfig(AdapterConfig):
    name: AdapterName = AdapterName.full


@dataclass
class LoRAConfig(AdapterConfig):
    name: AdapterName = AdapterName.lora
    r: int = 8  # rank
    alpha: float = 16.0  # scaling numerator: updates are scaled by alpha / r
    dropout: float = 0.0  # on the adapter's input
    bias: LoRABias = LoRABias.none  # which biases train
    # A preset (attention | attention_all | all_linear) or a list of module names. OmegaConf has
    # no "string or list" type: dino_mx.engine.validate checks the value before training.
    targets: Any = "attention"


@dataclass
class FreezeConfig(AdapterConfig):
    name: AdapterName = AdapterName.freeze
    num_layers: int = 0  # blocks frozen after the embeddings


@dataclass
class AugmentConfig:
    """DINO's multi-crop (``augment=multicrop``, ``medical``): the crops of every augment."""

    name: str = MISSING
    backend: Backend = Backend.per_sample  # per_sample: loader workers; batched: whole batches
    global_size: int = 224
    local_size: int = 96
    n_local: int = 8
    global_scale: list[float] = field(default_factory=lambda: [0.32, 1.0])
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.32])
    hflip: float = 0.5
    vflip: float = 0.0
    color_jitter: float = 0.8  # probability; 0 disables
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2  # RGB only
    hue: float = 0.1  # RGB only
    grayscale: float = 0.2  # RGB only
    blur: list[float] = field(default_factory=lambda: [1.0, 0.1, 0.5])  # global 1, global 2, local
    solarize: float = 0.2  # second global view only


@dataclass
class LabelGuidedConfig(AugmentConfig):
    """``augment=label_guided`` (data with regions: roi_npz / coco): multi-crop plus ROI crops."""

    roi_crops: int = 0  # extra local crops centred on a region
    roi_prob: float = 0.5  # chance an extra crop is region-centred (else random)
    roi_classes: list[str] = field(default_factory=list)  # names or ids; [] = every class
    roi_jitter: float = 0.1  # largest centre offset, fraction of the crop side (< 0.5)
    roi_scale: list[float] = field(default_factory=lambda: [1.0, 1.5])  # crop side / region side


@dataclass
class HeadConfig:
    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    nlayers: int = 3
    norm_last_layer: bool = True


@dataclass
class IBOTConfig:
    """iBOT masked-patch loss of ``method=dinov2`` (configs/method/dinov2.yaml holds advice)."""

    weight: float = 0.0  # 0 disables iBOT and the masking; DINOv2: 1.0
    separate_head: bool = False  # false: the DINO head also projects the patch tokens
    head: HeadConfig = field(default_factory=HeadConfig)  # used when separate_head is true
    mask_ratio_min_max: list[float] = field(default_factory=lambda: [0.1, 0.5])
    mask_sample_probability: float = 0.5  # share of global crops that are masked at all


@dataclass
class MethodConfig:
    """What both methods have: DINO's CLS loss, its head, temperatures and EMA teacher."""

    name: MethodName = MISSING
    head: HeadConfig = field(default_factory=HeadConfig)
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_ratio: float = 0.3
    center_momentum: float = 0.9
    momentum_teacher: float = 0.996
    centering: Centering = Centering.softmax_center  # both losses (DINO, iBOT)
    dino_weight: float = 1.0  # weight of the CLS (DINO) loss
    koleo_weight: float = 0.0  # KoLeo on the student's global CLS features (dinov1: 0 = no term)
    # nats: koleo_weight scaled by clamp(1 - I / koleo_gate, 0, 1), I the teacher's information
    # about the image (an EMA of batch minus per-sample target entropy; 0 in a collapse):
    # KoLeo where the run collapses, none where it learns. null: koleo_weight throughout
    koleo_gate: float | None = None


@dataclass
class DINOv1Config(MethodConfig):
    name: MethodName = MethodName.dinov1


@dataclass
class DINOv2Config(MethodConfig):
    name: MethodName = MethodName.dinov2
    ibot: IBOTConfig = field(default_factory=IBOTConfig)


@dataclass
class DistillConfig:
    """A frozen distillation teacher (configs/distill/teacher.yaml holds the advice)."""

    name: DistillName = DistillName.none
    # hub name, local Hugging Face folder (e.g. a `dino-mx export`), dino-mx run directory or
    # checkpoint (its EMA teacher), or a model preset of configs/model/ (random init: tests)
    model: str | None = None
    weight: float = 1.0  # total = self-distillation + weight * distillation
    loss: DistillLoss = DistillLoss.cosine
    teacher_views: Views = Views.local  # the crops the teacher encodes
    student_views: Views = Views.all  # the student crops matched to them
    projector_hidden: int = 0  # 0: linear student -> teacher projection; > 0: MLP width
    out_dim: int = 4096  # cross_entropy: fixed random prototypes in the teacher's space
    teacher_temp: float = 0.04  # cross_entropy
    student_temp: float = 0.1  # cross_entropy
    seed: int = 0  # the projector's init, the prototypes, a random-init preset teacher


@dataclass
class OptimConfig:
    name: OptimName = OptimName.adamw
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_ratio: float = 0.1
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    clip_grad: float = 3.0  # 0 disables
    freeze_last_layer_ratio: float = 0.01
    layerwise_decay: float = 1.0  # lr of block i scaled by decay^(depth - i); 1 disables
    patch_embed_lr_mult: float = 1.0  # extra lr factor of the patch embedding


@dataclass
class TrainerConfig:
    # The run's length (dino_mx/engine/budget.py): max_steps updates, or with epochs and/or
    # budget_min set, epochs over the data capped by max_steps (null: no cap) and the minutes.
    max_steps: int | None = 1000
    epochs: float | None = None
    budget_min: float | None = None
    batch_size: int = 64  # per process
    min_updates_per_epoch: int = 0  # > 0: a small dataset's batch halved until an epoch has this
    grad_accum: int = 1
    precision: Precision = Precision.auto
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    keep_last: int = 2
    resume: bool = False
    eval_every: int = 0  # k-NN on the eval split every N steps; 0 disables
    eval_count: int = 0  # > 0: eval_every = ceil(max_steps / eval_count), evenly over any length
    best_metric: str = "knn/val_accuracy_k20"  # periodic-eval scalar that picks checkpoints/best
    tb_images: int = 8  # val images in the attention / PCA grids at each eval; 0: none
    compile: bool = False
    # Shard the student and its EMA teacher with FSDP2 (dino_mx/engine/fsdp.py); also on when
    # Accelerate is launched with an FSDP config. One process: ignored.
    fsdp: bool = False
    progress: bool = True
    on_collapse: OnCollapse = OnCollapse.warn  # dino_mx/engine/collapse.py
    collapse_window: int = 10  # consecutive logged steps a collapse must hold
    collapse_uniform_ratio: float = 0.98  # teacher_entropy >= ratio * log K: near uniform
    collapse_onehot_ratio: float = 0.1  # teacher_batch_entropy <= ratio * log K: one prototype


@dataclass
class PathsConfig:
    output_dir: str = MISSING


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


# The schema of each option, per group whose options differ in their keys; registered as
# ``schema/GROUP/OPTION``. An augment option the table does not name (``medical``) is a
# multi-crop; one named after an entry (``label_guided_wbc``) has that entry's schema.
OPTION_SCHEMAS: dict[str, dict[str, type]] = {
    "adapter": {"full": FullAdapterConfig, "lora": LoRAConfig, "freeze": FreezeConfig},
    "method": {"dinov1": DINOv1Config, "dinov2": DINOv2Config},
    "augment": {"multicrop": AugmentConfig, "label_guided": LabelGuidedConfig},
}


def option_schema(group: str, name: str) -> type:
    """The schema of option ``name`` of ``group`` (a key of :data:`OPTION_SCHEMAS`): the entry
    with the longest name that ``name`` starts with, else the group's first entry."""
    options = OPTION_SCHEMAS[group]
    matches = [option for option in options if str(name).startswith(option)]
    return options[max(matches, key=len)] if matches else next(iter(options.values()))


def register_schemas() -> None:
    """Register ``train_schema`` (``configs/train.yaml`` lists it first) and every option's
    schema, which the option's YAML lists first."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for group, options in OPTION_SCHEMAS.items():
        for name, schema in options.items():
            store.store(group=f"schema/{group}", name=name, node=schema)

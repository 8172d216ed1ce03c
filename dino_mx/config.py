"""Typed schemas of the training configuration, registered with Hydra's ConfigStore.

The YAML files under ``configs/`` hold the values and the tuning advice; these dataclasses hold
the shape. ``configs/train.yaml`` lists ``train_schema`` first in its defaults, so every group
option and command-line override is merged into a struct config: an unknown key
(``optim.lrr=1``) or a value of the wrong type (``optim.lr=abc``) fails and names the key.
Hydra's ``+key=`` adds keys even to a struct config, so :mod:`dino_mx.engine.validate` checks the
composed config against these dataclasses, and the value ranges, before training starts.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    format: str = "medmnist"  # medmnist | npz | imagefolder | roi_npz | coco
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
    on_bad_image: str = "raise"  # raise | skip


@dataclass
class ModelConfig:
    name: str = MISSING
    pretrained: str | None = None  # hub name or local folder; null = random init from the preset
    arch: str = "vit"  # vit | dinov2 (random init only; pretrained reads config.json)
    patch_size: int = 16
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    image_size: int = 224  # position-embedding grid; other sizes are interpolated
    drop_path_rate: float = 0.0


@dataclass
class AdapterConfig:
    name: str = "full"  # full | lora | freeze
    r: int = 8  # LoRA rank
    alpha: float = 16.0  # LoRA scaling numerator: updates are scaled by alpha / r
    dropout: float = 0.0  # LoRA dropout on the adapter's input
    bias: str = "none"  # LoRA: none | all | lora_only (which biases train)
    # LoRA targets: preset attention | attention_all | all_linear, or a list of module names
    targets: Any = "attention"
    num_layers: int = 0  # freeze: blocks frozen after the embeddings


@dataclass
class AugmentConfig:
    name: str = MISSING
    backend: str = "per_sample"  # per_sample: loader workers; batched: whole batches (kornia)
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
    # Label-guided crops (augment=label_guided, data with regions: roi_npz / coco)
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

    weight: float = 0.0  # 0 disables (dinov1); DINOv2: 1.0
    separate_head: bool = False  # false: the DINO head also projects the patch tokens
    head: HeadConfig = field(default_factory=HeadConfig)  # used when separate_head is true
    mask_ratio_min_max: list[float] = field(default_factory=lambda: [0.1, 0.5])
    mask_sample_probability: float = 0.5  # share of global crops that are masked at all


@dataclass
class MethodConfig:
    name: str = MISSING  # dinov1 | dinov2
    head: HeadConfig = field(default_factory=HeadConfig)
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_ratio: float = 0.3
    center_momentum: float = 0.9
    momentum_teacher: float = 0.996
    centering: str = "softmax_center"  # softmax_center | sinkhorn_knopp (both losses)
    dino_weight: float = 1.0  # weight of the CLS (DINO) loss
    koleo_weight: float = 0.0  # KoLeo on the student's global CLS features; dinov2 only
    ibot: IBOTConfig = field(default_factory=IBOTConfig)  # dinov2 only
    layerwise_decay: float = 1.0  # lr of block i scaled by decay^(depth - i); 1 disables
    patch_embed_lr_mult: float = 1.0  # extra lr factor of the patch embedding


@dataclass
class DistillConfig:
    """A frozen distillation teacher (configs/distill/teacher.yaml holds the advice)."""

    name: str = "none"  # none | teacher
    # hub name, local Hugging Face folder (e.g. a `dino-mx export`), dino-mx run directory or
    # checkpoint (its EMA teacher), or a model preset of configs/model/ (random init: tests)
    model: str | None = None
    weight: float = 1.0  # total = self-distillation + weight * distillation
    loss: str = "cosine"  # cosine | smooth_l1 | cross_entropy
    teacher_views: str = "local"  # global | local | all: the crops the teacher encodes
    student_views: str = "all"  # global | local | all: the student crops matched to them
    projector_hidden: int = 0  # 0: linear student -> teacher projection; > 0: MLP width
    out_dim: int = 4096  # cross_entropy: fixed random prototypes in the teacher's space
    teacher_temp: float = 0.04  # cross_entropy
    student_temp: float = 0.1  # cross_entropy
    seed: int = 0  # the projector's init, the prototypes, a random-init preset teacher


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_ratio: float = 0.1
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    clip_grad: float = 3.0  # 0 disables
    freeze_last_layer_ratio: float = 0.01


@dataclass
class TrainerConfig:
    max_steps: int = 1000
    batch_size: int = 64  # per process
    grad_accum: int = 1
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    keep_last: int = 2
    resume: bool = False
    eval_every: int = 0  # k-NN on the eval split every N steps; 0 disables
    tb_images: int = 8  # val images in the attention / PCA grids at each eval; 0: none
    compile: bool = False
    progress: bool = True
    on_collapse: str = "warn"  # warn | stop | off (dino_mx/engine/collapse.py)
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


def register_schemas() -> None:
    """Register ``train_schema`` so ``configs/train.yaml`` can validate against it."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def config_dir() -> Path:
    """The ``configs/`` folder: packaged inside the wheel, or at the top of a source checkout."""
    packaged = Path(str(resources.files("dino_mx"))) / "configs"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"dino-mx configs not found in {packaged} or {checkout}")


def schema_fields(path: str) -> list[str] | None:
    """The keys the schema allows in section ``path`` (``""``: the top level), or None when
    ``path`` is not a schema section (a free-form value such as ``adapter.targets``)."""
    cls: Any = TrainConfig
    for part in [p for p in path.split(".") if p]:
        hints = typing.get_type_hints(cls)
        cls = hints.get(part)
        if not dataclasses.is_dataclass(cls):
            return None
    return [f.name for f in dataclasses.fields(cls)]


def unknown_key_message(full_key: str) -> str:
    """``unknown key optim.lrr; valid keys of optim: name, lr, ...``."""
    section = full_key.rpartition(".")[0]
    valid = schema_fields(section)
    if valid is None:
        return f"unknown key {full_key}"
    return f"unknown key {full_key}; valid keys of {section or 'the config'}: {', '.join(valid)}"

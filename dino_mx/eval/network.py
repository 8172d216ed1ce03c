"""What an evaluation encodes with, and on which data.

A :class:`Network` is a checkpoint's teacher or student, a backbone never trained here (a model
preset at random init, or a pretrained hub model / local folder), or the raw-pixel baseline,
together with the data/augment config it is evaluated under: the checkpoint's saved config,
or ``configs/train.yaml`` composed with Hydra for baselines, then the user's overrides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import Dataset

from dino_mx.config import TrainConfig, config_dir, register_schemas
from dino_mx.data.tasks import BINARY, MULTICLASS, MULTILABEL, check_task
from dino_mx.engine.checkpoint import resolve_checkpoint
from dino_mx.eval.features import (
    PixelBackbone,
    build_model_baseline,
    cached_features,
    checkpoint_fingerprint,
    eval_dataset,
    feature_key,
    load_backbone_from_checkpoint,
    model_fingerprint,
    run_dir_of,
)
from dino_mx.models.backbone import Backbone

DEFAULT_DATA = "pneumoniamnist"
SECTIONS = ("data", "augment", "model")


@dataclass
class Network:
    """A feature extractor and the config it is evaluated with.

    Attributes:
        cfg: Resolved ``data``, ``augment`` and ``model`` sections.
        label: ``teacher``, ``student``, ``model:NAME`` or ``pixels``.
        fingerprint: Identity of the weights, part of the feature-cache key.
        backbone: The frozen encoder; None for a model baseline until the data's channels are
            known (:func:`network_features` builds it).
        which, ckpt, step, run_dir: Set for checkpoints only.
        trained_on: ``{name, size}`` of the data the checkpoint was trained on (checkpoints only),
            to tell its own data from another's in result file names.
        task: The data's MedMNIST task type; set by :func:`network_features`.
    """

    cfg: DictConfig
    label: str
    fingerprint: dict[str, Any]
    backbone: nn.Module | None = None
    which: str | None = None
    ckpt: Path | None = None
    step: int | None = None
    run_dir: Path | None = None
    trained_on: dict[str, Any] | None = None
    task: str | None = None

    @property
    def image_size(self) -> int:
        """Input side in pixels: the training global-crop size."""
        return int(self.cfg.augment.global_size)

    def tokens_for(self, tokens: str) -> str:
        """The feature actually used: a pixel vector has no patch tokens, so always ``cls``."""
        return "cls" if self.label == "pixels" else tokens


def compose_train_config(overrides: Sequence[str]) -> DictConfig:
    """``configs/train.yaml`` composed with Hydra's compose API and ``overrides``.

    Works inside another Hydra context too (a script that composed its own training config):
    that context is set aside for the call and put back afterwards.
    """
    register_schemas()
    outer = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            config_dir=str(config_dir()), version_base="1.3", job_name="dino_mx_eval"
        ):
            return compose(config_name="train", overrides=list(overrides))
    finally:
        if outer is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(outer)


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply ``KEY=VALUE`` overrides (Hydra syntax) to a config validated by the schema, so a
    mistyped key fails naming it."""
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    return cfg


def _sections(cfg: DictConfig, data_root: str | None) -> DictConfig:
    out = OmegaConf.create({k: OmegaConf.to_container(cfg[k], resolve=True) for k in SECTIONS})
    if data_root is not None:
        out.data.root = data_root
    return out


def load_network(
    ckpt: str | Path | None = None,
    model: str | None = None,
    baseline: str | None = None,
    which: str = "teacher",
    data: str | None = None,
    data_root: str | None = None,
    overrides: Sequence[str] = (),
) -> Network:
    """Build the :class:`Network` named by exactly one of ``ckpt``, ``model``, ``baseline``.

    Args:
        ckpt: Run directory or checkpoint folder.
        model: Model preset (``configs/model/NAME.yaml``), hub name or local HF folder.
        baseline: ``pixels``.
        which: ``teacher`` or ``student`` (checkpoints only).
        data: Data config group; default the checkpoint's data, else pneumoniamnist.
        data_root: Sets ``data.root``.
        overrides: ``KEY=VALUE`` for the data/augment (and, for baselines, model) config.
    """
    if sum(x is not None for x in (ckpt, model, baseline)) != 1:
        raise ValueError("name exactly one of ckpt, model or baseline")
    if baseline not in (None, "pixels"):
        raise ValueError(f"unknown baseline '{baseline}'; valid choices: pixels")
    overrides = list(overrides)
    if ckpt is None:
        groups = [f"data={data or DEFAULT_DATA}"]
        preset = model is not None and (config_dir() / "model" / f"{model}.yaml").is_file()
        if preset:
            groups.append(f"model={model}")
        cfg = compose_train_config(groups + overrides)
        if model is not None and not preset:
            cfg.model.pretrained = cfg.model.name = model
        label = "pixels" if baseline else f"model:{model}"
        cfg = _sections(cfg, data_root)
        fingerprint = {"baseline": "pixels"} if baseline else model_fingerprint(cfg.model)
        return Network(cfg, label, fingerprint, PixelBackbone() if baseline else None)

    if any(o.lstrip("+~").startswith("model") for o in overrides):
        raise ValueError("the checkpoint fixes the model; only data/augment can be overridden")
    backbone, saved, step = load_backbone_from_checkpoint(ckpt, which)
    trained_on = {"name": saved.data.name, "size": saved.data.size}
    if data is not None:
        saved.data = compose_train_config([f"data={data}", *overrides]).data
    cfg = _sections(apply_overrides(saved, overrides), data_root)
    ckpt_dir = resolve_checkpoint(ckpt)
    return Network(
        cfg,
        which,
        checkpoint_fingerprint(ckpt_dir, which),
        backbone,
        which,
        ckpt_dir,
        step,
        run_dir_of(ckpt_dir),
        trained_on,
    )


def dataset_task(dataset: Dataset) -> str:
    """The MedMNIST task type of ``dataset``: its ``task`` attribute, else inferred from its
    ``multilabel`` and ``num_classes`` (binary for two classes, multi-class otherwise)."""
    task = getattr(dataset, "task", None)
    if task is not None:
        return check_task(task)
    if getattr(dataset, "multilabel", False):
        return MULTILABEL
    return BINARY if getattr(dataset, "num_classes", None) == 2 else MULTICLASS


def network_features(
    net: Network,
    splits: Sequence[str],
    tokens: str,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Features and labels of each split, through the feature cache.

    The cache is ``cache_dir``, else ``RUN/eval/features`` for a checkpoint inside a run, else
    none.

    Sets ``net.task`` from the data (the first split's dataset).

    Returns:
        split -> (features (N, D) float32, labels: (N,) int64 class indices, or (N, L) float
        0/1 targets for multi-label data).
    """
    channels = net.backbone.num_channels if isinstance(net.backbone, Backbone) else None
    datasets = {s: eval_dataset(net.cfg.data, s, net.image_size, channels) for s in splits}
    net.task = dataset_task(next(iter(datasets.values())))
    if net.backbone is None:
        net.backbone = build_model_baseline(net.cfg, next(iter(datasets.values())).channels)
    if cache_dir is None and net.run_dir is not None:
        cache_dir = net.run_dir / "eval" / "features"
    tokens = net.tokens_for(tokens)
    out = {}
    for split, dataset in datasets.items():
        key = feature_key(net.fingerprint, tokens, net.cfg.data, net.image_size, split)
        out[split] = cached_features(
            net.backbone,
            dataset,
            key,
            cache_dir,
            split=split,
            batch_size=batch_size,
            tokens=tokens,
            device=device,
        )
    return out

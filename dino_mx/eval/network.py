"""What an evaluation encodes with, and on which data.

A :class:`NetworkSpec` names the network and the data, the way every ``dino-mx eval``
sub-command and ``dino-mx visualize`` take them; :func:`load_network` turns it into a
:class:`Network`: a checkpoint's teacher or student, a backbone never trained here (a model
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
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import Dataset

from dino_mx.checkpoint import (
    PREFER,
    checkpoint_fingerprint,
    choose_checkpoint,
    load_backbone_from_checkpoint,
    run_dir_of,
)
from dino_mx.config import apply_overrides, compose_train_config, config_dir
from dino_mx.data.tasks import BINARY, MULTICLASS, MULTILABEL, check_task
from dino_mx.eval.features import (
    PixelBackbone,
    cached_features,
    eval_dataset,
    feature_key,
    model_fingerprint,
)
from dino_mx.models.backbone import Backbone, build_seeded_backbone

DEFAULT_DATA = "pneumoniamnist"
BASELINES = ("pixels",)
SECTIONS = ("data", "augment", "model")


@dataclass(frozen=True)
class NetworkSpec:
    """The network and the data an evaluation uses, checked when it is made.

    One value instead of the same keyword arguments on every evaluation, figure and command
    (``dino-mx eval`` / ``dino-mx visualize`` build it from their options with
    :func:`dino_mx.eval.parser.network_spec`). Exactly one of ``ckpt``, ``model`` and
    ``baseline`` names the network.

    Attributes:
        ckpt: Run directory (its best checkpoint, else its latest: see ``checkpoint``) or
            checkpoint folder.
        model: Model preset (``configs/model/NAME.yaml``, random init with seed 0), hub name or
            local Hugging Face folder.
        baseline: ``pixels``: the resized image itself is the feature.
        which: ``teacher`` or ``student`` (checkpoints only).
        data: Data config group; default the checkpoint's data, else pneumoniamnist.
        data_root: Sets ``data.root``.
        overrides: ``KEY=VALUE`` for the data/augment (and, for baselines, model) config; a
            checkpoint fixes its model.
        checkpoint: Which checkpoint of a run directory: ``best`` (picked by the run's periodic
            k-NN, ``trainer.best_metric``; the latest when it has none) or ``latest``.

    Raises:
        ValueError: Not exactly one network, an unknown baseline or checkpoint choice, or a
            model override for a checkpoint.
    """

    ckpt: str | Path | None = None
    model: str | None = None
    baseline: str | None = None
    which: str = "teacher"
    data: str | None = None
    data_root: str | None = None
    overrides: Sequence[str] = ()
    checkpoint: str = "best"

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))  # frozen, hashable
        if sum(x is not None for x in (self.ckpt, self.model, self.baseline)) != 1:
            raise ValueError("name exactly one of ckpt, model or baseline")
        if self.baseline not in (None, *BASELINES):
            raise ValueError(
                f"unknown baseline '{self.baseline}'; valid choices: {', '.join(BASELINES)}"
            )
        if self.checkpoint not in PREFER:
            raise ValueError(
                f"unknown checkpoint choice '{self.checkpoint}'; valid choices: {', '.join(PREFER)}"
            )
        if self.ckpt is not None and any(
            o.lstrip("+~").startswith("model") for o in self.overrides
        ):
            raise ValueError("the checkpoint fixes the model; only data/augment can be overridden")


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
        choice: How ``ckpt`` was chosen: ``best`` or ``latest`` of a run directory, ``folder``
            (named directly); checkpoints only.
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
    choice: str | None = None

    @property
    def image_size(self) -> int:
        """Input side in pixels: the training global-crop size."""
        return int(self.cfg.augment.global_size)

    def tokens_for(self, tokens: str) -> str:
        """The feature actually used: a pixel vector has no patch tokens, so always ``cls``."""
        return "cls" if self.label == "pixels" else tokens

    def describe(self) -> dict[str, Any]:
        """What was evaluated, as every result file records it (``network`` to ``model``)."""
        return {
            "network": self.label,
            "which": self.which,
            "checkpoint": str(self.ckpt) if self.ckpt else None,
            "checkpoint_choice": self.choice,
            "step": self.step,
            "model": self.cfg.model.name if self.label != "pixels" else None,
        }


def _sections(cfg: DictConfig, data_root: str | None) -> DictConfig:
    out = OmegaConf.create({k: OmegaConf.to_container(cfg[k], resolve=True) for k in SECTIONS})
    if data_root is not None:
        out.data.root = data_root
    return out


def _baseline_network(spec: NetworkSpec) -> Network:
    """A model preset / pretrained model or the pixel baseline, under the composed config."""
    groups = [f"data={spec.data or DEFAULT_DATA}"]
    preset = spec.model is not None and (config_dir() / "model" / f"{spec.model}.yaml").is_file()
    if preset:
        groups.append(f"model={spec.model}")
    cfg = compose_train_config(groups + list(spec.overrides))
    if spec.model is not None and not preset:
        cfg.model.pretrained = cfg.model.name = spec.model
    label = "pixels" if spec.baseline else f"model:{spec.model}"
    cfg = _sections(cfg, spec.data_root)
    fingerprint = {"baseline": "pixels"} if spec.baseline else model_fingerprint(cfg.model)
    return Network(cfg, label, fingerprint, PixelBackbone() if spec.baseline else None)


def load_network(spec: NetworkSpec) -> Network:
    """Build the :class:`Network` ``spec`` names, with its data/augment config resolved.

    A checkpoint brings its saved config (``spec.data`` swaps in another data group); a model or
    baseline is evaluated under ``configs/train.yaml`` composed with the data group.
    """
    if spec.ckpt is None:
        return _baseline_network(spec)
    chosen = choose_checkpoint(spec.ckpt, spec.checkpoint)  # logs which one, and why
    ckpt_dir = chosen.folder
    backbone, saved, step = load_backbone_from_checkpoint(ckpt_dir, spec.which)
    trained_on = {"name": saved.data.name, "size": saved.data.size}
    if spec.data is not None:
        saved.data = compose_train_config([f"data={spec.data}", *spec.overrides]).data
    cfg = _sections(apply_overrides(saved, spec.overrides), spec.data_root)
    return Network(
        cfg,
        spec.which,
        checkpoint_fingerprint(ckpt_dir, spec.which),
        backbone,
        spec.which,
        ckpt_dir,
        step,
        run_dir_of(ckpt_dir),
        trained_on,
        choice=chosen.choice,
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
        net.backbone = build_seeded_backbone(net.cfg.model, next(iter(datasets.values())).channels)
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

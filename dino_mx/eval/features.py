"""Frozen features for evaluation: the eval transform, feature extraction and a feature cache.

The protocol is DINO's (Caron et al., ICCV 2021, ``eval_knn.py`` / ``eval_linear.py``): no
augmentation, each image resized to the training global-crop size and normalised with the data
statistics, then encoded once by the frozen backbone. ``cls`` uses the CLS token; ``cls+mean``
concatenates it with the mean of the patch tokens (DINO's linear protocol for ViT-S).
Features are cached under ``RUN/eval/features/`` keyed by the checkpoint files' identity
(:func:`dino_mx.checkpoint.checkpoint_fingerprint`), so a second evaluation of the same
checkpoint reads them back and a new checkpoint invalidates them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from dino_mx.checkpoint.io import file_identity
from dino_mx.data import ConvertChannels, build_dataset, resolve_data_path
from dino_mx.data.channels import LUMA, per_channel

log = logging.getLogger(__name__)

TOKENS = ("cls", "cls+mean")
DATA_KEYS = ("name", "format", "flag", "size", "root", "file", "channels", "mean", "std")


class PixelBackbone(nn.Module):
    """The raw-pixel baseline as a backbone: ``cls`` is the flattened image (B, C*H*W) and the
    single "patch" is the same vector, so ``cls+mean`` only repeats it."""

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        flat = pixel_values.flatten(1).float()  # (B, C*H*W)
        return flat, flat[:, None]  # (B, D), (B, 1, D)


def channel_stats(
    mean: Sequence[float], std: Sequence[float], channels: int
) -> tuple[list[float], list[float]]:
    """Per-channel ``mean``/``std`` for ``channels`` inputs (``data.channels.per_channel``),
    except that RGB statistics of data converted to grey become their luma combination (exact
    for the mean, an upper bound for the std, tight as RGB channels are strongly correlated)."""
    if len(mean) == len(std) == 3 and channels == 1:
        return (
            [sum(w * m for w, m in zip(LUMA, mean, strict=True))],
            [sum(w * s for w, s in zip(LUMA, std, strict=True))],
        )
    return per_channel(mean, std, channels)


def eval_transform(
    size: int, mean: Sequence[float], std: Sequence[float], channels: int
) -> v2.Compose:
    """Resize to ``size`` x ``size``, scale to [0, 1] and normalise: nothing random."""
    mean, std = channel_stats(mean, std, channels)
    return v2.Compose(
        [
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


def eval_dataset(data: DictConfig, split: str, size: int, channels: int | None = None) -> Dataset:
    """``build_dataset`` with the evaluation transform, converting to ``channels`` if given
    (a checkpoint trained on grey images evaluated on RGB data, say)."""
    dataset = build_dataset(data, split)
    ops = [dataset.transform] if dataset.transform is not None else []
    if channels is not None and channels != dataset.channels:
        ops.append(ConvertChannels(channels))
        dataset.channels = channels
    ops.append(eval_transform(size, data.mean, data.std, dataset.channels))
    dataset.transform = v2.Compose(ops)
    return dataset


@torch.inference_mode()
def extract_features(
    backbone: nn.Module,
    dataset: Dataset,
    batch_size: int = 256,
    tokens: str = "cls",
    device: str | torch.device | None = None,
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Encode every image of ``dataset`` once, in order.

    Args:
        backbone: Maps (B, C, H, W) images to ``(cls (B, D), patches (B, N, D))``.
        dataset: Yields ``(image (C, H, W) float, label)`` with the eval transform applied.
        batch_size: Images per forward pass.
        tokens: ``cls`` -> (N, D); ``cls+mean`` -> (N, 2D), CLS then the patch-token mean.
        device: Where to run; default CUDA when available, else CPU.
        num_workers: DataLoader workers.

    Returns:
        Float32 CPU features (N, D) or (N, 2D), and labels (N,) (or (N, L) if multi-label).
    """
    if tokens not in TOKENS:
        raise ValueError(f"tokens must be one of {TOKENS}, got {tokens!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    features, labels = [], []
    for images, y in loader:
        cls, patches = backbone(images.as_subclass(Tensor).to(device))  # (B, D), (B, N, D)
        if tokens == "cls+mean":
            cls = torch.cat([cls, patches.mean(dim=1)], dim=1)  # (B, 2D)
        features.append(cls.float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(features), torch.cat(labels)


def model_fingerprint(model: DictConfig, seed: int = 0) -> dict[str, Any]:
    """Identity of a ``--model`` baseline: the model config, the seed, and for a local
    pretrained folder the mtime/size of its files."""
    out: dict[str, Any] = {"model": OmegaConf.to_container(model, resolve=True), "seed": seed}
    if model.pretrained and Path(model.pretrained).expanduser().is_dir():
        folder = Path(model.pretrained).expanduser()
        out["files"] = {p.name: file_identity(p) for p in sorted(folder.iterdir()) if p.is_file()}
    return out


def feature_key(
    network: Mapping[str, Any], tokens: str, data: DictConfig, image_size: int, split: str
) -> str:
    """Hex digest naming the features of ``network`` on ``split`` of ``data``."""
    data_dict = OmegaConf.to_container(data, resolve=True)
    assert isinstance(data_dict, dict)
    payload = {
        "network": dict(network),
        "tokens": tokens,
        "data": {k: data_dict.get(k) for k in DATA_KEYS},
        "data_path": str(resolve_data_path(data).resolve()),  # a relative root depends on cwd
        "image_size": image_size,
        "split": split,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_features(
    backbone: nn.Module,
    dataset: Dataset,
    key: str,
    cache_dir: str | Path | None,
    *,
    split: str = "",
    batch_size: int = 256,
    tokens: str = "cls",
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`extract_features`, read from ``cache_dir/{split}-{key}.pt`` when present.

    Args:
        key: From :func:`feature_key`; everything that changes the features must be in it.
        cache_dir: Folder of ``.pt`` files; None disables the cache.
        split: Only used in the file name, to make the folder readable.

    Returns:
        Features (N, D) and labels (N,), as :func:`extract_features`.
    """
    path = Path(cache_dir) / f"{split}-{key}.pt" if cache_dir is not None else None
    if path is not None and path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        log.info("features: cache hit %s", path)
        return stored["features"], stored["labels"]
    features, labels = extract_features(backbone, dataset, batch_size, tokens, device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"features": features, "labels": labels}, tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        log.info("features: cached %s", path)
    return features, labels

"""A 4-channel smoke run: train a random-init ViT, evaluate it with k-NN, export it, reload it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from dino_mx.checkpoint import latest_checkpoint, load_component
from dino_mx.eval.cli import evaluate_knn
from dino_mx.eval.network import NetworkSpec
from dino_mx.export import export_checkpoint
from dino_mx.train import train

PATCH_WEIGHT = "backbone.model.embeddings.patch_embeddings.projection.weight"


def write_four_channel_medmnist(path: Path, n: dict[str, int], size: int = 16) -> Path:
    """A MedMNIST-layout file (uint8 NHWC images, uint8 (N, 1) labels) of 4-channel images.

    Channels 0-2 are the same noise for both classes; only channel 3 tells them apart
    (class 0 dark, class 1 bright), so a classifier that dropped or mixed the fourth channel
    would be at chance.
    """
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in n.items():
        labels = np.arange(count) % 2
        images = rng.integers(0, 256, (count, size, size, 4))
        images[..., 3] = np.where(labels[:, None, None] == 1, 200, 40) + rng.integers(
            -20, 21, (count, size, size)
        )
        arrays[f"{split}_images"] = images.astype(np.uint8)
        arrays[f"{split}_labels"] = labels.astype(np.uint8)[:, None]
    np.savez(path, **arrays)
    return path


def test_four_channel_run_trains_evaluates_and_exports(tmp_path, smoke_config):
    data = write_four_channel_medmnist(tmp_path / "four.npz", {"train": 16, "val": 8, "test": 8})
    data_overrides = [
        "data=bloodcells",  # format npz: data.root / data.file
        "data.name=four_channel",
        f"data.root={tmp_path}",
        f"data.file={data.name}",
        "data.mean=[0.5,0.5,0.5,0.5]",
        "data.std=[0.29,0.29,0.29,0.29]",
    ]
    run = tmp_path / "run"
    cfg = smoke_config(
        run,
        *data_overrides,
        "model.patch_size=4",
        "model.image_size=16",
        "model.depth=1",
        "model.hidden_size=24",
        "model.num_heads=2",
        "augment.global_size=16",
        "augment.local_size=8",
        "trainer.max_steps=2",
        "trainer.save_every=2",
        "trainer.batch_size=4",
    )
    last = train(cfg, run)
    assert last["step"] == 1 and math.isfinite(last["loss"])
    ckpt = latest_checkpoint(run)
    student = load_file(ckpt / "model.safetensors")
    assert student[PATCH_WEIGHT].shape == (24, 4, 4, 4)  # (D, C, p, p)
    assert load_component(ckpt, "teacher")[PATCH_WEIGHT].shape == (24, 4, 4, 4)

    knn = evaluate_knn(NetworkSpec(run), ks=(3,), split="test")
    accuracy = knn["metrics"]["3"]["accuracy"]
    assert 0.0 <= accuracy <= 1.0
    # Raw pixels on the same data: channel 3 separates the classes, so k-NN is exact.
    pixels_spec = NetworkSpec(baseline="pixels", data="bloodcells", overrides=data_overrides[1:])
    pixels = evaluate_knn(pixels_spec, ks=(3,), split="test")
    assert pixels["metrics"]["3"]["accuracy"] == 1.0

    exported = export_checkpoint(run, tmp_path / "export")
    model = AutoModel.from_pretrained(exported, add_pooling_layer=False)
    assert model.config.num_channels == 4
    with torch.no_grad():
        out = model(pixel_values=torch.randn(2, 4, 16, 16)).last_hidden_state
    assert out.shape == (2, 1 + 16, 24) and torch.isfinite(out).all()


def test_four_channel_run_with_the_batched_backend(tmp_path, smoke_config):
    data = write_four_channel_medmnist(tmp_path / "four.npz", {"train": 8}, size=12)
    cfg = smoke_config(
        tmp_path / "run",
        "data=bloodcells",
        f"data.root={tmp_path}",
        f"data.file={data.name}",
        "data.mean=[0.5]",
        "data.std=[0.29]",
        "augment.backend=batched",
        "model.patch_size=4",
        "model.depth=1",
        "model.hidden_size=24",
        "model.num_heads=2",
        "augment.global_size=12",
        "augment.local_size=8",
        "trainer.max_steps=1",
        "trainer.batch_size=4",
    )
    last = train(cfg, tmp_path / "run")
    assert math.isfinite(last["loss"])
    ckpt = latest_checkpoint(tmp_path / "run")
    assert load_file(ckpt / "model.safetensors")[PATCH_WEIGHT].shape[1] == 4

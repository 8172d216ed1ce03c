"""The periodic evaluation's TensorBoard images: val/attention and val/pca at each eval_every."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dino_mx.checkpoint import load_backbone_from_checkpoint
from dino_mx.eval.monitor import (
    PAD,
    TITLE,
    ValMonitor,
    display_image,
    evenly_spaced,
    grid_shape,
    tile_size,
)
from dino_mx.models import build_backbone
from dino_mx.train import train
from tests.conftest import make_config

# One block of width 24 with vit_micro's 3 heads and patch 4: 28 px images are a 7x7 grid.
TINY = ("model.depth=1", "model.hidden_size=24")
TAGS = ("val/attention", "val/pca")


def events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def decode(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


def tile(grid: np.ndarray, row: int, col: int, side: int) -> np.ndarray:
    y, x = TITLE + PAD + row * (side + PAD), PAD + col * (side + PAD)
    return grid[y : y + side, x : x + side]


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four smoke steps with an evaluation every two: after steps 2 and 4."""
    run = tmp_path_factory.mktemp("monitor") / "run"
    cfg = make_config(
        "+experiment=smoke",
        *TINY,
        "trainer.eval_every=2",
        "trainer.progress=false",
        f"paths.output_dir={run}",
    )
    train(cfg, run)
    return run


def test_evenly_spaced_indices_are_fixed_and_span_the_split():
    # round(i * 523 / 7) for i = 0..7
    assert evenly_spaced(524, 8).tolist() == [0, 75, 149, 224, 299, 374, 448, 523]
    assert evenly_spaced(3, 8).tolist() == [0, 1, 2]  # fewer images than asked: all of them
    assert evenly_spaced(10, 1).tolist() == [0]


def test_tile_is_a_multiple_of_the_patch_grid_near_96_px():
    assert tile_size(7) == 98  # 28 px, patch 4: 14 px per patch
    assert tile_size(14) == 98  # 224 px, patch 16
    assert tile_size(4) == 96
    assert tile_size(200) == 200  # never below one pixel per patch
    assert grid_shape(8, 5, 98) == (12 + 8 * 100 + 2, 5 * 100 + 2)


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (1, [[7, 7, 7]]),  # grey repeated
        (3, [[7, 100, 250]]),  # RGB as is
        (4, [[90, 90, 90]]),  # grey mean (7 + 100 + 250 + 1) / 4 = 89.5 -> 90
    ],
)
def test_display_image_handles_any_channel_count(channels, expected):
    values = torch.tensor([7, 100, 250, 1], dtype=torch.uint8)[:channels]
    image = values[:, None, None].expand(channels, 1, 2)  # (C, 1, 2)
    shown = display_image(image)
    assert shown.dtype == np.uint8 and shown.shape == (1, 2, 3)
    assert shown[0].tolist() == [expected[0]] * 2


def test_training_logs_grids_at_each_eval_next_to_knn(monitored_run):
    acc = events(monitored_run)
    knn_steps = [e.step for e in acc.Scalars("knn/val_accuracy_k20")]
    assert knn_steps == [1, 3]
    side = tile_size(28 // 4)  # 98
    heads = 3
    for tag, columns in zip(TAGS, (2 + heads, 2)):
        logged = acc.Images(tag)
        assert [e.step for e in logged] == knn_steps, tag
        height, width = grid_shape(8, columns, side)
        assert all((e.height, e.width) == (height, width) for e in logged), tag
        assert decode(logged[0]).shape == (height, width, 3)
    attention = decode(acc.Images("val/attention")[-1])
    for row in range(8):
        picture, mean_map = tile(attention, row, 0, side), tile(attention, row, 1, side)
        assert len(np.unique(picture)) > 10  # a chest X-ray, not a blank tile
        # The heat map changes the picture, and not by a constant: the attention varies.
        delta = mean_map.astype(int) - picture.astype(int)
        assert np.abs(delta).mean() > 10 and len(np.unique(delta)) > 10


def test_logged_grids_are_the_teachers_at_that_step(monitored_run):
    """The step-3 grids (after the 4th update) equal the ones the checkpointed teacher draws."""
    backbone, cfg, step = load_backbone_from_checkpoint(monitored_run, prefer="latest")
    assert step == 4
    monitor = ValMonitor(cfg.data, cfg.augment.global_size, 8)
    expected = monitor.images(backbone, torch.device("cpu"))
    acc = events(monitored_run)
    for tag in TAGS:
        logged = decode(acc.Images(tag)[-1])
        assert logged.shape == expected[tag].shape
        # PNG is lossless; allow one grey level for float noise between the two forward passes.
        assert np.abs(logged.astype(int) - expected[tag].astype(int)).max() <= 1, tag
    # The first column is the input picture, the same fixed images at both steps.
    first, last = (decode(e) for e in acc.Images("val/pca"))
    assert np.array_equal(tile(first, 5, 0, 98), tile(last, 5, 0, 98))


def test_tb_images_zero_writes_no_image(tmp_path):
    run = tmp_path / "run"
    cfg = make_config(
        "+experiment=smoke",
        *TINY,
        "trainer.max_steps=2",
        "trainer.eval_every=2",
        "trainer.tb_images=0",
        "trainer.progress=false",
        f"paths.output_dir={run}",
    )
    train(cfg, run)
    acc = events(run)
    assert [e.step for e in acc.Scalars("knn/val_accuracy_k20")] == [1]
    assert acc.Tags()["images"] == []


def test_rgb_input_shows_colour_tiles_and_all_heads_up_to_four():
    """data.channels=3 (grey data repeated to RGB) and a 6-head model: 4 heads are drawn."""
    cfg = make_config("+experiment=smoke", "data.channels=3", "model.num_heads=6")
    monitor = ValMonitor(cfg.data, cfg.augment.global_size, 3)
    backbone = build_backbone(cfg.model, 3).eval()
    grids = monitor.images(backbone, torch.device("cpu"))
    side = tile_size(7)
    assert grids["val/attention"].shape == (*grid_shape(3, 2 + 4, side), 3)
    assert grids["val/pca"].shape == (*grid_shape(3, 2, side), 3)
    images, pictures = monitor.fixed_images()
    assert images.shape == (3, 3, 28, 28) and len(pictures) == 3
    assert torch.equal(images[0, 0], images[0, 2])  # the grey image repeated
    assert ValMonitor(cfg.data, 28, 0).images(backbone, torch.device("cpu")) == {}

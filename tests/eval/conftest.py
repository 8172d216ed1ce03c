"""A tiny run trained on synthetic smears with boxes, shared by the attention/localisation tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dino_mx.train import train
from tests.conftest import make_config

ROI_SIZE = 32


def write_synthetic_roi(folder: Path, size: int = ROI_SIZE) -> Path:
    """``bccd_roi_{size}.npz`` of 12 noisy images (8 train, 4 test), each with one bright
    square of class 0 (WBC) and, for even images, a dim square of class 1 (RBC)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (12, size, size, 3)).astype(np.uint8)
    boxes, box_image, box_class = [], [], []
    for i in range(12):
        x, y = rng.integers(0, size - 12, 2)
        images[i, y : y + 12, x : x + 12] = 230
        boxes.append([x, y, x + 12, y + 12])
        box_image.append(i)
        box_class.append(0)
        if i % 2 == 0:
            boxes.append([0, 0, 4, 4])
            box_image.append(i)
            box_class.append(1)
    path = folder / f"bccd_roi_{size}.npz"
    np.savez(
        path,
        images=images,
        boxes=np.array(boxes, np.float32),
        box_image=np.array(box_image),
        box_class=np.array(box_class),
        image_label=np.arange(12)[:, None] % 2,
        split=np.array([0] * 8 + [1] * 4),
    )
    return path


ROI_RUN_OVERRIDES = (
    "+experiment=smoke",
    "data=bccd_roi",
    f"data.size={ROI_SIZE}",
    "augment=label_guided",
    "augment.global_size=16",
    "augment.local_size=8",
    "model.patch_size=4",
    "model.depth=1",
    "model.hidden_size=24",
    "model.num_heads=2",
    "trainer.max_steps=2",
    "trainer.batch_size=4",
    "trainer.progress=false",
)


@pytest.fixture(scope="session")
def roi_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two label-guided DINO steps of a one-block, two-head ViT on the synthetic file."""
    root = tmp_path_factory.mktemp("roi")
    write_synthetic_roi(root)
    run = root / "run"
    cfg = make_config(*ROI_RUN_OVERRIDES, f"data.root={root}", f"paths.output_dir={run}")
    train(cfg, run)
    return run


TINY = ["model.depth=1", "model.hidden_size=24"]


def train_tiny_run(out: Path) -> Path:
    """Two DINO steps of a width-24, one-block ViT on the bundled data (a few seconds)."""
    cmd = [
        sys.executable,
        "-m",
        "dino_mx.cli",
        "train",
        "+experiment=smoke",
        *TINY,
        "trainer.max_steps=2",
        "trainer.save_every=2",
        "trainer.progress=false",
        f"paths.output_dir={out}",
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=out.parent)
    return out

"""Shared helpers: compose real configs from configs/ and train in-process on tiny settings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dino_mx.config import config_dir, register_schemas
from dino_mx.data import bundled_pneumoniamnist_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
register_schemas()

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_config(*overrides: str) -> DictConfig:
    """The training config composed exactly as `dino-mx train OVERRIDES` would."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture
def smoke_config():
    def build(run_dir: Path, *overrides: str) -> DictConfig:
        return make_config(
            "+experiment=smoke",
            f"paths.output_dir={run_dir}",
            "trainer.progress=false",
            *overrides,
        )

    return build


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step run of a width-24 ViT (tests/eval/conftest.py), trained once for every test
    that only reads it; a test that writes into a run copies it first."""
    from tests.eval.conftest import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("tiny") / "run")


def normalised_test_images(n: int, mean: float, std: float) -> torch.Tensor:
    """The first ``n`` bundled test images normalised by hand: (n, 1, 28, 28)."""
    raw = np.load(bundled_pneumoniamnist_path())["test_images"][:n]
    return (torch.from_numpy(raw).float()[:, None] / 255.0 - mean) / std

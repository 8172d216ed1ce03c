"""Shared helpers: compose real configs from configs/ and train in-process on tiny settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dino_mx.config import config_dir, register_schemas

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

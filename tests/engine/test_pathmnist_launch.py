"""The design card's command, end to end and offline:

    accelerate launch dino_mx/train.py +experiment=pathmnist_lora data.root=... model.pretrained=...

on a PathMNIST file laid out as MedMNIST ships it and a ``save_pretrained`` DINOv2 folder
standing in for ``facebook/dinov2-small``, with one process and with two CPU processes. On a
machine without CUDA, ``accelerate launch --num_processes 2`` alone starts one process (its
multi-CPU path is MPI); ``--multi_gpu`` goes through torchrun and starts two (gloo).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
# The launcher installed beside this interpreter (the venv's), else the one on PATH.
ACCELERATE = Path(sys.executable).with_name("accelerate")
if not ACCELERATE.is_file():
    ACCELERATE = Path(shutil.which("accelerate") or "accelerate")
SPLITS = {"train": 8, "val": 4, "test": 4}
TINY = (
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.progress=false",
    "augment.n_local=2",
    "augment.global_size=56",  # multiples of the patch, 14
    "augment.local_size=28",
    "data.num_workers=0",
    "method.head.out_dim=64",
    "method.head.hidden_dim=64",
    "method.head.bottleneck_dim=32",
)


def write_pathmnist(root: Path) -> None:
    """``pathmnist_224.npz`` as MedMNIST v2 writes it: RGB uint8 (N, 224, 224, 3) images and
    uint8 (N, 1) labels 0..8 per split."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in SPLITS.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 9, (n, 1), dtype=np.uint8)
    np.savez(root / "pathmnist_224.npz", **arrays)


def write_dinov2(folder: Path) -> None:
    """A random-init DINOv2 (patch 14, 518 px like ``facebook/dinov2-small``, 2 blocks of
    width 32) saved the way the hub copy is."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=518,
    )
    Dinov2Model(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("medmnist")
    write_pathmnist(root)
    model = tmp_path_factory.mktemp("hub") / "dinov2-small"
    write_dinov2(model)
    return root, model


def launch(launcher: list[str], run: Path, data: Path, model: Path) -> None:
    """``accelerate launch`` the training script with the card's experiment and tiny sizes."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [
        str(ACCELERATE),
        "launch",
        *launcher,
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(ROOT / "dino_mx/train.py"),
        "+experiment=pathmnist_lora",
        f"data.root={data}",
        f"model.pretrained={model}",
        f"paths.output_dir={run}",
        *TINY,
    ]
    result = subprocess.run(
        cmd, cwd=run.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.parametrize(
    ("launcher", "processes"),
    [(["--num_processes", "1"], 1), (["--multi_gpu", "--num_processes", "2"], 2)],
    ids=["1proc", "2proc"],
)
def test_pathmnist_lora_card_command_runs_offline(tmp_path, inputs, launcher, processes):
    data, model = inputs
    run = tmp_path / "run"
    launch(launcher, run, data, model)

    ckpt = run / "checkpoints" / "step_0000002"
    assert (run / "checkpoints" / "latest").read_text().strip() == ckpt.name
    # Every process wrote its own RNG state: as many as were launched, no more.
    assert sorted(p.name for p in ckpt.glob("rng_state_*.safetensors")) == [
        f"rng_state_{i}.safetensors" for i in range(processes)
    ]
    # adapter=lora: the checkpoint holds the adapters and the head, the base lives in RUN/base
    # and is the save_pretrained folder's weights bit for bit (the stand-in was really loaded).
    student = load_file(ckpt / "model.safetensors")
    assert any(".lora_A." in k for k in student) and any(".lora_B." in k for k in student)
    assert all(".lora_" in k or k.startswith("head.") for k in student), sorted(student)
    assert json.loads((ckpt / "base.json").read_text())["path"] == "../../base"
    pretrained = load_file(model / "model.safetensors")
    base = load_file(run / "base" / "model.safetensors")
    assert base.keys() == pretrained.keys()
    for key, value in pretrained.items():
        assert torch.equal(base[key], value), key
    # The LoRA B matrices start at zero; after two steps at lr 5e-4 they have moved.
    assert any(v.abs().sum() > 0 for k, v in student.items() if ".lora_B." in k)

    logged = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged] == [0, 1]
    assert all(math.isfinite(e["loss"]) for e in logged)
    saved = (run / "config.yaml").read_text()
    assert f"pretrained: {model}" in saved and "name: lora" in saved

"""``dino-mx export``: a LoRA run's backbone, merged, loads with AutoModel and trains on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from transformers import AutoModel

from dino_mx.cli import main as cli_main
from dino_mx.engine.trainer import Trainer, make_accelerator, train
from dino_mx.export import INFO_FILE, export_checkpoint
from dino_mx.models import Backbone, random_init_model
from dino_mx.models.lora import inject_lora, merge_lora
from tests.conftest import make_config

LORA = ["adapter=lora", "adapter.r=4", "adapter.alpha=8", "adapter.targets=all_linear"]


@pytest.fixture(scope="module")
def lora_trainer(tmp_path_factory: pytest.TempPathFactory) -> Trainer:
    """Three LoRA steps at a high lr, so the merged update is far from zero."""
    run = tmp_path_factory.mktemp("export") / "run"
    cfg = make_config(
        "+experiment=smoke",
        f"paths.output_dir={run}",
        "trainer.max_steps=3",
        "trainer.progress=false",
        "optim.lr=2e-2",
        "method.momentum_teacher=0.5",
        *LORA,
    )
    set_seed(cfg.trainer.seed)
    run.mkdir(parents=True)
    trainer = Trainer(cfg, run, make_accelerator(cfg, run))
    trainer.fit()
    return trainer


def hf_cls(folder: Path, x: torch.Tensor) -> torch.Tensor:
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(pixel_values=x).last_hidden_state[:, 0]  # (B, D)


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_export_round_trip_gives_the_trained_features(lora_trainer, tmp_path, which):
    out = export_checkpoint(lora_trainer.run_dir, tmp_path / which, which)
    assert {"config.json", "model.safetensors", INFO_FILE} <= {p.name for p in out.iterdir()}
    network = lora_trainer.teacher if which == "teacher" else lora_trainer.student
    network.eval()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        trained = network.backbone(x)[0]  # LoRA layers, not merged
    exported = hf_cls(out, x)
    assert (exported - trained).abs().max() <= 1e-4
    base = hf_cls(lora_trainer.run_dir / "base", x)  # the adaptation is really in the export
    assert (exported - base).abs().max() > 1e-3
    info = json.loads((out / INFO_FILE).read_text())
    assert info["which"] == which and info["step"] == 3 and info["adapter"]["name"] == "lora"


def test_exported_folder_trains_on_as_a_pretrained_model(lora_trainer, tmp_path):
    exported = tmp_path / "exported"
    assert cli_main(["export", "--ckpt", str(lora_trainer.run_dir), "--out", str(exported)]) == 0
    run = tmp_path / "next"
    cfg = make_config(
        "+experiment=smoke",
        f"paths.output_dir={run}",
        "trainer.max_steps=1",
        "trainer.progress=false",
        f"model.pretrained={exported}",
        "adapter=freeze",
        "adapter.num_layers=1",
    )
    assert train(cfg, run)["step"] == 0
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(hf_cls(run / "base", x), hf_cls(exported, x))  # started from it


def test_export_refuses_a_folder_that_is_not_an_export(lora_trainer, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    args = ["export", "--ckpt", str(lora_trainer.run_dir), "--out", str(tmp_path)]
    assert cli_main(args) == 1
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_dinov2_lora_merges_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = random_init_model(
        "dinov2", num_channels=3, image_size=16, patch_size=4, hidden_size=24, depth=2, num_heads=2
    ).eval()
    inject_lora(model, r=4, alpha=8.0, targets="attention_all")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        adapted = Backbone(model)(x)[0]
    merge_lora(model).save_pretrained(tmp_path)
    assert (hf_cls(tmp_path, x) - adapted).abs().max() <= 1e-4

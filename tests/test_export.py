"""``dino-mx export``: a LoRA run's backbone, merged, loads with AutoModel and trains on; the
folder's model card says what it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.utils import set_seed
from transformers import AutoModel

from dino_mx.cli import main as cli_main
from dino_mx.engine.run import build_trainer, make_accelerator
from dino_mx.engine.trainer import Trainer
from dino_mx.export import INFO_FILE, export_checkpoint
from dino_mx.model_card import card_facts, render_model_card
from dino_mx.models import Backbone, random_init_model
from dino_mx.models.lora import inject_lora, merge_lora
from dino_mx.train import train
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
    trainer = build_trainer(cfg, run, make_accelerator(cfg, run))
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
    assert cli_main(args) == 2  # a user error: one line
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


def split_card(text: str) -> tuple[dict, str]:
    """The YAML front matter (parsed) and the Markdown body of a model card."""
    assert text.startswith("---\n")
    meta, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(meta), body


KNN_RESULT = {  # as `dino-mx eval knn --ckpt RUN` writes RUN/eval/knn.json
    "eval": "knn",
    "network": "teacher",
    "which": "teacher",
    "step": 3,
    "tokens": "cls",
    "data": {"name": "pneumoniamnist", "size": 28, "image_size": 28},
    "split": "test",
    "n_train": 4708,
    "n_eval": 624,
    "temperature": 0.07,
    "metrics": {"20": {"accuracy": 0.8532, "balanced_accuracy": 0.8104, "auc": 0.9217}},
}
LINEAR_RESULT = KNN_RESULT | {
    "eval": "linear",
    "best_c": 0.1,
    "val": {"accuracy": 0.9371},
    "test": {"accuracy": 0.8542},
    "metrics": {"accuracy": 0.8542},
}


def test_model_card_front_matter_step_and_eval_figures(lora_trainer, tmp_path):
    evals = lora_trainer.run_dir / "eval"
    evals.mkdir(exist_ok=True)
    (evals / "knn.json").write_text(json.dumps(KNN_RESULT))
    (evals / "linear.json").write_text(json.dumps(LINEAR_RESULT))
    try:
        out = export_checkpoint(lora_trainer.run_dir, tmp_path / "card", "student")
    finally:
        (evals / "knn.json").unlink()
        (evals / "linear.json").unlink()
    meta, body = split_card((out / "README.md").read_text())
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert {"dino-mx", "dino", "self-supervised", "medical-imaging"} <= set(meta["tags"])
    assert "base_model" not in meta  # the smoke run starts from random init
    assert "datasets" not in meta  # MedMNIST has no official Hub dataset id to name
    assert "**student** network at **step 3**" in body
    assert "Data: pneumoniamnist, medmnist format, 4708 training images of 28 px, 1 channel" in body
    assert "adapter lora (r 4, alpha 8.0, targets all_linear" in body
    assert "Steps: 3, batch 8 per process" in body
    assert "- k-NN (k = 20, teacher at step 3, pneumoniamnist, tokens cls), test: " in body
    assert "accuracy 0.8532, balanced_accuracy 0.8104, auc 0.9217" in body
    assert "(C = 0.1, teacher at step 3" in body and "val: accuracy 0.9371" in body
    assert "test: accuracy 0.8542" in body
    assert "mean [0.572], std [0.168]" in body and "AutoModel.from_pretrained" in body
    assert "torch.tensor([0.572])" in body  # the normalisation to apply, as code


def test_model_card_of_a_hub_based_run_without_evaluations():
    cfg = make_config("+experiment=smoke", "model.pretrained=facebook/dinov2-small")
    info = {"which": "teacher", "step": 40, "adapter": {"name": "freeze", "num_layers": 6}}
    hf_config = {"model_type": "dinov2", "hidden_size": 384, "num_hidden_layers": 12}
    facts = card_facts(cfg, info, hf_config | {"patch_size": 14, "num_channels": 1}, "mit")
    meta, body = split_card(render_model_card(facts, {}))
    assert meta["base_model"] == "facebook/dinov2-small" and meta["license"] == "mit"
    assert "Base model: facebook/dinov2-small" in body
    assert "dinov2 backbone (12 blocks, width 384, patch 14, 1 channel)" in body
    assert "freeze (embeddings + first 6 blocks frozen)" in body
    assert "None: no evaluation results" in body


def test_model_card_lists_the_demo_table_and_other_data_apart():
    cfg = make_config("+experiment=smoke")
    info = {"which": "teacher", "step": 800, "adapter": {"name": "full"}}
    facts = card_facts(cfg, info, {"model_type": "vit", "num_channels": 1})
    other = KNN_RESULT | {"data": {"name": "bloodcells", "size": 64}, "n_train": 9999}
    demo = {"k": 20, "tokens": "cls", "rows": {"raw pixels": {"knn_test": 0.843}}}
    _, body = split_card(render_model_card(facts, {"demo": demo, "knn_bloodcells": other}))
    assert "Data: pneumoniamnist, medmnist format, images of 28 px" in body  # not 9999
    assert "- k-NN (k = 20, teacher at step 3, bloodcells, tokens cls), test: " in body
    assert "- `dino-mx demo` (k-NN k = 20, tokens cls):\n  - raw pixels: knn_test 0.8430" in body

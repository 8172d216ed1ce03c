"""Adapters on random-init ViTModel / Dinov2Model: targets, trainable sets, merge, report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from dino_mx.config import FreezeConfig, LoRAConfig
from dino_mx.engine.ema import build_teacher, ema_update
from dino_mx.models import Backbone, DINOHead, MultiCropModel, random_init_model
from dino_mx.models.adapters import ADAPTERS, build_adapter, freeze_blocks
from dino_mx.models.lora import inject_lora, merge_lora, resolve_lora_targets
from dino_mx.models.param_report import format_report, parameter_report

WIDTH, DEPTH = 24, 3
LORA = LoRAConfig(r=4, alpha=8.0)


def tiny(arch: str = "vit") -> nn.Module:
    torch.manual_seed(0)
    return random_init_model(
        arch,
        num_channels=1,
        image_size=16,
        patch_size=4,
        hidden_size=WIDTH,
        depth=DEPTH,
        num_heads=2,
    )


def blocks_of(arch: str) -> str:
    return "layers" if arch == "vit" else "encoder.layer"  # transformers 5 names


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_presets_resolve_to_the_attention_projections(arch):
    model, blocks = tiny(arch), blocks_of(arch)
    qv = [f"{blocks}.{i}.attention.{p}" for i in range(DEPTH) for p in ("q_proj", "v_proj")]
    assert resolve_lora_targets(model, "attention") == qv
    every = ("q_proj", "k_proj", "v_proj", "o_proj")
    assert resolve_lora_targets(model, "attention_all") == [
        f"{blocks}.{i}.attention.{p}" for i in range(DEPTH) for p in every
    ]
    linear = resolve_lora_targets(model, "all_linear")
    assert len(linear) == 6 * DEPTH and f"{blocks}.0.mlp.fc2" in linear


class _V4Attention(nn.Module):
    """transformers 4.x ViT naming: attention.attention.{query,key,value}, attention.output.dense"""

    def __init__(self, d: int):
        super().__init__()
        self.attention = nn.ModuleDict({k: nn.Linear(d, d) for k in ("query", "key", "value")})
        self.output = nn.ModuleDict({"dense": nn.Linear(d, d)})


class _V4Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.attention = _V4Attention(d)
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(d, 4 * d)})
        self.output = nn.ModuleDict({"dense": nn.Linear(4 * d, d)})  # the MLP's, not attention's


class _V4ViT(nn.Module):
    def __init__(self, d: int = 8, depth: int = 2):
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=depth)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_V4Block(d) for _ in range(depth))


def test_presets_resolve_transformers_4_names():
    model = _V4ViT()
    assert resolve_lora_targets(model, "attention") == [
        f"encoder.layer.{i}.attention.attention.{p}" for i in range(2) for p in ("query", "value")
    ]
    every = resolve_lora_targets(model, "attention_all")
    assert "encoder.layer.1.attention.output.dense" in every and len(every) == 8
    assert "encoder.layer.1.output.dense" not in every  # MLP output: all_linear only
    assert "encoder.layer.1.output.dense" in resolve_lora_targets(model, "all_linear")


def test_explicit_targets_and_their_errors():
    model = tiny()
    assert resolve_lora_targets(model, ["k_proj", "layers.2.mlp.fc1"]) == [
        "layers.0.attention.k_proj",
        "layers.1.attention.k_proj",
        "layers.2.attention.k_proj",
        "layers.2.mlp.fc1",
    ]
    with pytest.raises(ValueError, match="query") as err:
        resolve_lora_targets(model, ["query"])  # a 4.x name on a 5.x model
    assert "layers.<i>.attention.q_proj  (x3)" in str(err.value)  # lists the linear layers
    with pytest.raises(ValueError, match="valid presets"):
        resolve_lora_targets(model, "attn")


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_lora_trains_only_adapters_and_head_and_starts_at_the_base(arch):
    backbone = Backbone(tiny(arch)).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        before = backbone(x)[0]
    build_adapter(LORA).apply(backbone)
    student = MultiCropModel(backbone, DINOHead(WIDTH, 10, 16, 8, 2, norm_last_layer=False))
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert {n for n in trainable if n.startswith("head.")} == {
        f"head.{n}" for n, _ in student.head.named_parameters()
    }
    assert sum("lora_A" in n for n in trainable) == 2 * DEPTH  # query + value per block
    with torch.no_grad():  # B starts at zero: the adapted model computes the base function
        torch.testing.assert_close(backbone(x)[0], before, rtol=0, atol=0)


def test_lora_bias_option_trains_biases():
    model = tiny()
    inject_lora(model, r=2, alpha=2.0, bias="all")
    assert model.layers[0].mlp.fc1.bias.requires_grad
    assert not model.layers[0].mlp.fc1.weight.requires_grad


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_merge_folds_the_update_into_plain_linear_layers(arch):
    reference = tiny(arch).eval()
    model = tiny(arch).eval()
    inject_lora(model, r=4, alpha=8.0, targets="attention_all")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained, non-zero update
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        adapted = model(pixel_values=x).last_hidden_state
        merge_lora(model)
        merged = model(pixel_values=x).last_hidden_state
    assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())
    assert model.state_dict().keys() == reference.state_dict().keys()
    assert not hasattr(model, "peft_config")
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)
    assert (adapted - reference(pixel_values=x).last_hidden_state).abs().max() > 1e-2


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
def test_freeze_stops_embeddings_and_first_blocks(arch):
    model, blocks = tiny(arch), blocks_of(arch)
    freeze_blocks(model, 2)
    for name, p in model.named_parameters():
        frozen = name.startswith(("embeddings.", f"{blocks}.0.", f"{blocks}.1."))
        assert p.requires_grad != frozen, name
    with pytest.raises(ValueError, match=f"has {DEPTH} blocks"):
        freeze_blocks(tiny(arch), DEPTH + 1)
    with pytest.raises(ValueError, match="unknown adapter"):
        build_adapter({"name": "prefix"})


def test_parameter_report_counts_by_hand():
    backbone = Backbone(tiny())
    build_adapter(LORA).apply(backbone)
    head = DINOHead(WIDTH, 10, 16, 8, 2)  # norm_last_layer: the gain (10 values) is frozen
    rows = {r.group: r for r in parameter_report(backbone.model, head)}
    d, h = WIDTH, 4 * WIDTH
    block = 4 * (d * d + d) + 2 * 2 * d + (d * h + h) + (h * d + d)  # attn, 2 norms, MLP
    lora = 2 * (4 * d + d * 4)  # A (r, d) and B (d, r) on query and value
    assert (rows["blocks 0-2"].total, rows["blocks 0-2"].trainable) == (
        3 * (block + lora),
        3 * lora,
    )
    embeddings = d + 17 * d + (16 * d + d)  # CLS, 16 + 1 positions, 4x4 patch conv
    assert (rows["embeddings"].total, rows["embeddings"].trainable) == (embeddings, 0)
    head_total = (d * 16 + 16) + (16 * 8 + 8) + 10 * 8 + 10
    assert (rows["head"].total, rows["head"].trainable) == (head_total, head_total - 10)
    assert rows["all"].trainable == 3 * lora + head_total - 10
    table = format_report(list(rows.values()))
    assert "blocks 0-2" in table and f"{3 * lora:,}" in table

    freeze = Backbone(tiny())
    build_adapter(FreezeConfig(num_layers=1)).apply(freeze)
    groups = [r.group for r in parameter_report(freeze.model, head)]
    assert groups == ["embeddings", "block 0", "blocks 1-2", "final norm", "head", "all"]


def test_lora_teacher_shares_the_frozen_base_and_averages_the_adapters():
    backbone = build_adapter(LORA).apply(Backbone(tiny()))
    student = MultiCropModel(backbone, DINOHead(WIDTH, 10, 16, 8, 2))
    teacher = build_teacher(student, share_frozen=True)
    s_params, t_params = dict(student.named_parameters()), dict(teacher.named_parameters())
    assert s_params.keys() == t_params.keys()
    for name, p in s_params.items():
        shared = t_params[name].data_ptr() == p.data_ptr()
        assert shared == (not p.requires_grad), name  # frozen: one copy; trainable: its own
    storages = {
        p.untyped_storage().data_ptr() for p in [*student.parameters(), *teacher.parameters()]
    }
    n_trainable = sum(p.requires_grad for p in student.parameters())
    assert len(storages) == len(s_params) + n_trainable

    with torch.no_grad():
        for p in student.parameters():
            if p.requires_grad:
                p.add_(1.0)
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    ema_update(teacher, student, momentum=0.75)
    for name, p in teacher.named_parameters():
        if s_params[name].requires_grad:
            torch.testing.assert_close(p, 0.75 * before[name] + 0.25 * s_params[name])
        else:
            assert torch.equal(p, before[name]), name


def test_each_adapter_says_if_its_run_keeps_a_frozen_base_and_how_a_card_names_it():
    kept = {name: adapter.keeps_frozen_base for name, adapter in ADAPTERS.items()}
    assert kept == {"full": False, "lora": True, "freeze": True}
    assert build_adapter(None).describe() == "full"  # a run older than adapters
    # A config.yaml of an older dino-mx held every adapter's keys; each takes its own.
    saved = {"name": "lora", "r": 8, "alpha": 16.0, "dropout": 0.0, "bias": "none"}
    saved |= {"targets": ["q_proj", "v_proj"], "num_layers": 0}
    assert build_adapter(saved).describe() == (
        "lora (r 8, alpha 16.0, targets ['q_proj', 'v_proj']; merged into the weights)"
    )
    assert build_adapter(FreezeConfig(num_layers=6)).describe() == (
        "freeze (embeddings + first 6 blocks frozen)"
    )


def test_lora_load_state_gives_the_trained_function_as_a_plain_model():
    trained = build_adapter(LORA).apply(Backbone(tiny()).eval())
    with torch.no_grad():
        for name, p in trained.model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained, non-zero update
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = trained(x)[0]
    frozen = {n for n, p in trained.model.named_parameters() if not p.requires_grad}
    state = {k: v for k, v in trained.model.state_dict().items() if k not in frozen}
    loaded = build_adapter(LORA).load_state(Backbone(tiny()).eval(), state, frozen)
    assert not any(isinstance(m, BaseTunerLayer) for m in loaded.model.modules())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(KeyError, match="do not fit the adapted model"):
        build_adapter(LORA).load_state(Backbone(tiny()), state, frozenset())

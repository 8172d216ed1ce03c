"""method=dinov2 end to end on the smoke config: losses logged, heads and mask tokens trained,
resume bit-identical; and cross-training of every backbone family with every method."""

import json
import math
import shutil

import pytest
import torch
from hydra.errors import ConfigCompositionException
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dino_mx.checkpoint import latest_checkpoint, load_component
from dino_mx.data import InfiniteSampler, MaskedCrops, SeededAugment, build_dataset
from dino_mx.data.views import Views
from dino_mx.engine.build import build_transform
from dino_mx.engine.ema import build_teacher
from dino_mx.engine.learner import Learner
from dino_mx.engine.methods import get_method, prepare_mask_token
from dino_mx.engine.run import build_trainer, make_accelerator
from dino_mx.models import build_backbone
from dino_mx.train import train
from tests.conftest import make_config

LOSSES = ("loss/dino", "loss/ibot", "loss/koleo")


@pytest.mark.parametrize("backend", ["per_sample", pytest.param("batched", marks=pytest.mark.slow)])
def test_dinov2_trains_with_all_three_losses_finite_and_logged(tmp_path, smoke_config, backend):
    run = tmp_path / "run"
    cfg = smoke_config(
        run,
        "method=dinov2",
        "method.ibot.mask_sample_probability=1.0",
        f"augment.backend={backend}",
    )
    last = train(cfg, run)
    logged = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged] == [0, 1, 2, 3]
    for entry in logged:
        assert all(math.isfinite(entry[k]) for k in (*LOSSES, "loss"))
        assert entry["loss/ibot"] > 0 and entry["loss/koleo"] != 0
        weighted = entry["loss/dino"] + entry["loss/ibot"] + 0.1 * entry["loss/koleo"]
        assert entry["loss"] == pytest.approx(weighted, rel=1e-5)
    assert {"center_norm", "ibot_center_norm", "teacher_entropy"} <= set(last)
    events = EventAccumulator(str(next((run / "tb").rglob("events.out.tfevents.*")))).Reload()
    assert set(LOSSES) <= set(events.Tags()["scalars"])
    ckpt = latest_checkpoint(run)
    assert set(load_component(ckpt, "loss")) == {"dino.center", "ibot.center"}
    assert "backbone.mask_token" in load_file(ckpt / "model.safetensors")  # ViT: the wrapper's


def state(ckpt):
    return (
        load_file(ckpt / "model.safetensors"),
        load_component(ckpt, "teacher"),
        load_component(ckpt, "loss"),
        load_file(ckpt / "optimizer.safetensors"),
    )


@pytest.mark.slow
def test_dinov2_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, smoke_config):
    # With the KoLeo gate: its EMA is loss state, restored so the resumed weights match too.
    common = (
        *("method=dinov2", "method.ibot.separate_head=true", "trainer.save_every=2"),
        "method.koleo_gate=1",
    )
    straight = tmp_path / "straight"
    train(smoke_config(straight, *common, "trainer.keep_last=0"), straight)  # 4 steps
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints/step_0000002", resumed / "checkpoints/step_0000002")
    train(smoke_config(resumed, *common, "trainer.resume=true"), resumed)
    a, b = state(straight / "checkpoints/step_0000004"), state(resumed / "checkpoints/step_0000004")
    for part_a, part_b in zip(a[:3], b[:3]):
        assert part_a.keys() == part_b.keys()
        for key in part_a:
            assert torch.equal(part_a[key], part_b[key]), key
    assert a[3].keys() == b[3].keys() and a[3]  # the AdamW moments and step of each parameter
    for key in a[3]:
        assert torch.equal(a[3][key], b[3][key]), key


def dinov2_learner(cfg):
    """The learner and EMA teacher of ``cfg`` (a 1-channel model), as the trainer builds them."""
    method = get_method(cfg.method.name)
    backbone = build_backbone(cfg.model, 1)
    prepare_mask_token(backbone, method.masked)
    parts = method.build(cfg.method, backbone)
    return parts, Learner(parts.student, parts.objective), build_teacher(parts.student)


def one_batch(cfg, parts) -> Views:
    """A real micro-batch of the smoke data through the method's transform."""
    dataset = build_dataset(cfg.data)
    transform = build_transform(cfg, dataset, parts)
    assert isinstance(transform, MaskedCrops)
    items = iter(InfiniteSampler(len(dataset), cfg.trainer.seed))
    samples = [SeededAugment(dataset, transform)[next(items)][0] for _ in range(4)]
    crops = [torch.stack([s[0][i] for s in samples]) for i in range(len(samples[0][0]))]
    return Views(crops, torch.stack([s[1] for s in samples]))  # masks (B, 2, N)


def grads_by_part(separate, dino_weight, ibot_weight):
    cfg = make_config(
        "+experiment=smoke",
        "method=dinov2",
        f"method.ibot.separate_head={separate}",
        "method.ibot.mask_sample_probability=1.0",
        f"method.dino_weight={dino_weight}",
        f"method.ibot.weight={ibot_weight}",
        "method.koleo_weight=0",
    )
    parts, learner, teacher = dinov2_learner(cfg)
    student = parts.student
    learner(one_batch(cfg, parts), teacher, 0.04).loss.backward()
    moved = {}
    for part in ("head", "ibot_head", "backbone"):
        module = getattr(student, part)
        if module is not None:
            moved[part] = any(
                p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()
            )
    return moved


def test_separate_ibot_head_learns_from_ibot_only_and_dino_head_from_dino_only():
    assert grads_by_part(True, 0.0, 1.0) == {"head": False, "ibot_head": True, "backbone": True}
    assert grads_by_part(True, 1.0, 0.0) == {"head": True, "ibot_head": False, "backbone": True}


def test_shared_head_learns_from_the_ibot_loss_too():
    assert grads_by_part(False, 0.0, 1.0) == {"head": True, "backbone": True}


@pytest.mark.parametrize("separate", [True, False])
def test_a_dinov2_step_updates_the_heads_and_the_mask_token(tmp_path, smoke_config, separate):
    run = tmp_path / "run"
    cfg = smoke_config(
        run,
        "method=dinov2",
        f"method.ibot.separate_head={separate}",
        "method.ibot.mask_sample_probability=1.0",
        "trainer.max_steps=1",
    )
    run.mkdir()
    trainer = build_trainer(cfg, run, make_accelerator(cfg, run))
    student = trainer.student
    assert set(trainer.objective.terms()) == {"dino", "ibot", "koleo"}
    assert (student.ibot_head is not None) == separate
    parts = {"head": list(student.head.parameters()), "mask token": [student.backbone.mask_token]}
    if separate:
        parts["ibot_head"] = list(student.ibot_head.parameters())
    before = {k: [p.detach().clone() for p in params] for k, params in parts.items()}
    trainer.fit()
    for part, params in parts.items():
        assert any(not torch.equal(a, b) for a, b in zip(params, before[part])), part


@pytest.mark.parametrize("arch", ["vit", "dinov2"])
@pytest.mark.parametrize("method", ["dinov1", "dinov2"])
def test_any_backbone_trains_with_any_method(tmp_path, smoke_config, arch, method):
    run = tmp_path / "run"
    cfg = smoke_config(
        run,
        f"model.arch={arch}",
        f"method={method}",
        *(["method.ibot.mask_sample_probability=1.0"] if method == "dinov2" else []),
        "trainer.max_steps=1",
    )
    last = train(cfg, run)
    assert math.isfinite(last["loss"]) and ("loss/ibot" in last) == (method == "dinov2")
    student = load_file(latest_checkpoint(run) / "model.safetensors")
    native = "backbone.model.embeddings.mask_token"
    if arch == "dinov2":  # its own token: frozen by dinov1, trained by dinov2
        frozen = torch.equal(student[native], torch.zeros_like(student[native]))
        assert frozen == (method == "dinov1")
    else:  # ViT: only dinov2 adds a token, in the wrapper
        assert ("backbone.mask_token" in student) == (method == "dinov2")


def test_dinov1_has_no_ibot_and_koleo_only_when_weighted():
    # DINOv1's schema has no iBOT keys: setting one fails naming it.
    with pytest.raises(ConfigCompositionException, match="method.ibot"):
        make_config("method=dinov1", "method.ibot.weight=0.1")
    with pytest.raises(ValueError, match="dinov1, dinov2"):
        get_method("dinov3")
    backbone = build_backbone(make_config("+experiment=smoke").model, 1)
    plain = get_method("dinov1").build(make_config("+experiment=smoke").method, backbone)
    assert list(plain.objective.terms()) == ["dino"]  # weight 0: no term, no state, no cost
    cfg = make_config("+experiment=smoke", "method.koleo_weight=0.5").method
    parts = get_method("dinov1").build(cfg, backbone)
    assert list(parts.objective.terms()) == ["dino", "koleo"]
    assert parts.objective.weights["koleo"] == 0.5 and parts.masking is None
    assert not parts.objective.gates  # koleo_gate null: the weight throughout
    recipe = make_config("+experiment=pneumonia_cpu").method
    gated = get_method("dinov1").build(recipe, backbone).objective
    assert list(gated.gates) == ["koleo"] and gated.gates["koleo"].nats == recipe.koleo_gate == 1.0


@pytest.mark.parametrize("centering", ["softmax_center", "sinkhorn_knopp"])
def test_dinov2_losses_and_gradients_stay_finite_under_bf16_autocast(centering):
    # The method under torch.autocast, as Accelerate runs it with trainer.precision=bf16 (here on
    # the CPU: Accelerate's process-wide state forbids switching precision inside one test run).
    cfg = make_config(
        "+experiment=smoke",
        "method=dinov2",
        f"method.centering={centering}",
        "method.head.norm_last_layer=false",
        "method.ibot.mask_sample_probability=1.0",
    )
    parts, learner, teacher = dinov2_learner(cfg)
    student = parts.student
    views = one_batch(cfg, parts)
    crops, masks = views.crops, views.masks
    crops[0][1], masks[1] = crops[0][0], masks[0]  # two identical samples: KoLeo's duplicates
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = learner(views, teacher, 0.04, monitor=True)
    assert all(torch.isfinite(v) for v in out.terms.values()) and torch.isfinite(out.loss)
    assert all(math.isfinite(v) for v in out.monitors.values())
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)

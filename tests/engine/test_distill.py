"""distill=teacher on the smoke setting: the teacher stays frozen and out of checkpoints, the
projection trains, widths may differ, weight 0 is the plain self-distillation loss."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from hydra.errors import ConfigCompositionException
from omegaconf.errors import MissingMandatoryValue
from safetensors.torch import load_file

from dino_mx.checkpoint import latest_checkpoint, load_backbone_from_checkpoint, load_component
from dino_mx.data.views import view_indices
from dino_mx.engine.distill import build_distill_term, load_teacher_backbone
from dino_mx.engine.run import build_trainer, make_accelerator
from dino_mx.errors import one_line
from dino_mx.export import export_checkpoint
from dino_mx.models import adapt_input_channels
from dino_mx.train import train
from tests.conftest import make_config

# Student: the smoke ViT (48 wide); teacher: the vit_micro preset (96 wide) at random init.
DISTILL = ["distill=teacher", "distill.model=vit_micro"]


def config(run: Path, *overrides: str):
    return make_config(
        "+experiment=smoke", f"paths.output_dir={run}", "trainer.progress=false", *overrides
    )


def build(run: Path, *overrides: str):
    cfg = config(run, *overrides)
    set_seed(cfg.trainer.seed)
    run.mkdir(parents=True, exist_ok=True)
    return build_trainer(cfg, run, make_accelerator(cfg, run))


def logs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory: pytest.TempPathFactory):
    """Three steps distilling vit_micro into the smoke student."""
    run = tmp_path_factory.mktemp("distill") / "run"
    trainer = build(run, *DISTILL, "trainer.max_steps=3")
    teacher_before = snapshot(trainer.objective.distill.teacher)
    projector_before = snapshot(trainer.objective.distill.projector)
    trainer.fit()
    return trainer, teacher_before, projector_before, run


def test_the_teacher_is_frozen_bit_identical_and_gradient_free(distill_run):
    trainer, teacher_before, _, _ = distill_run
    teacher = trainer.objective.distill.teacher
    assert not teacher.training
    for name, p in teacher.named_parameters():
        assert not p.requires_grad and p.grad is None, name
        assert torch.equal(p, teacher_before[name]), name
    # Not part of the optimiser either.
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}


def test_the_projection_trains_and_both_losses_are_logged(distill_run):
    trainer, _, projector_before, run = distill_run
    projector = dict(trainer.objective.distill.projector.named_parameters())
    assert projector["0.weight"].shape == (96, 48)  # student 48 -> teacher 96
    report = (run / "parameters.txt").read_text()
    assert "projector          4,704         4,704  100.00" in report  # 48 * 96 + 96
    for name, p in projector.items():
        assert not torch.equal(p, projector_before[name]), name
    # The projector trains with the student: the optimiser holds it.
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in projector.values()} <= optimised
    for entry in logs(run):
        assert math.isfinite(entry["loss/distill"]) and entry["loss/distill"] > 0
        # weight 1: the total is the self-distillation loss plus the distillation loss.
        total = entry["loss/self"] + entry["loss/distill"]
        assert entry["loss"] == pytest.approx(total, rel=1e-6)
        assert entry["loss/self"] == pytest.approx(entry["loss/dino"], rel=1e-6)


def test_checkpoints_hold_no_teacher_weights(distill_run):
    trainer, _, _, run = distill_run
    ckpt = latest_checkpoint(run)
    stored = list(load_file(ckpt / "model.safetensors").values())
    stored += list(load_component(ckpt, "teacher").values())  # the EMA teacher
    teacher = list(trainer.objective.distill.teacher.state_dict().values())
    for t in teacher:
        assert not any(s.shape == t.shape and torch.equal(s, t) for s in stored), t.shape
    # The student and its EMA copy: nothing else (the projector is the objective's state).
    student_numel = sum(p.numel() for p in trainer.student.state_dict().values())
    assert sum(s.numel() for s in stored) == 2 * student_numel
    assert (run / "config.yaml").read_text().count("model: vit_micro") == 1


def test_distilled_runs_are_evaluated_and_exported_like_any_other(distill_run, tmp_path):
    _, _, _, run = distill_run
    backbone, _, step = load_backbone_from_checkpoint(run)
    assert step == 3 and backbone.embed_dim == 48
    assert (export_checkpoint(run, tmp_path / "export") / "model.safetensors").is_file()


def test_weight_zero_is_exactly_the_self_distillation_loss(tmp_path):
    plain = build(tmp_path / "plain", "trainer.max_steps=3")
    plain.fit()
    zero = build(tmp_path / "zero", *DISTILL, "distill.weight=0", "trainer.max_steps=3")
    zero.fit()
    for a, b in zip(logs(tmp_path / "plain"), logs(tmp_path / "zero"), strict=True):
        assert b["loss"] == b["loss/self"] == a["loss"], (a, b)
        assert b["loss/distill"] > 0
    zero_student = dict(zero.student.named_parameters())
    for name, p in plain.student.named_parameters():
        assert torch.equal(p, zero_student[name]), name


@pytest.mark.slow
def test_a_width_mismatch_192_to_384_trains_with_finite_loss(tmp_path):
    run = tmp_path / "run"
    trainer = build(
        run,
        "distill=teacher",
        "distill.model=vit_small",  # 384 wide, 12 blocks
        "model.hidden_size=192",
        "model.depth=1",
        "trainer.max_steps=2",
    )
    assert trainer.objective.distill.teacher.embed_dim == 384
    trainer.fit()
    assert all(math.isfinite(e["loss/distill"]) for e in logs(run))
    assert trainer.objective.distill.projector[0].weight.shape == (384, 192)


@pytest.mark.parametrize(
    "overrides",
    [
        ["adapter=lora", "adapter.r=2", "distill.loss=cross_entropy", "distill.out_dim=32"],
        ["adapter=freeze", "adapter.num_layers=1", "distill.loss=smooth_l1"],
        ["method=dinov2", "distill.teacher_views=all", "distill.projector_hidden=32"],
    ],
    ids=["lora-ce", "freeze-smoothl1", "dinov2-all-mlp"],
)
def test_distillation_composes_with_adapters_methods_and_losses(tmp_path, overrides):
    run = tmp_path / "run"
    trainer = build(run, *DISTILL, "trainer.max_steps=2", *overrides)
    teacher_before = snapshot(trainer.objective.distill.teacher)
    trainer.fit()
    entries = logs(run)
    assert all(math.isfinite(e["loss/distill"]) and math.isfinite(e["loss"]) for e in entries)
    for name, p in trainer.objective.distill.teacher.named_parameters():
        assert torch.equal(p, teacher_before[name]), name
    if "method=dinov2" in overrides:
        assert "loss/ibot" in entries[-1]


@pytest.mark.slow
def test_resuming_a_distilled_run_restores_the_projection(tmp_path):
    common = [*DISTILL, "trainer.max_steps=4", "trainer.save_every=2", "trainer.keep_last=0"]
    straight = tmp_path / "straight"
    train(config(straight, *common), straight)
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints/step_0000002", resumed / "checkpoints/step_0000002")
    train(config(resumed, *common, "trainer.resume=true"), resumed)
    for name in ("model", "loss"):  # the student; the objective's state, projector included
        a = load_file(straight / f"checkpoints/step_0000004/{name}.safetensors")
        b = load_file(resumed / f"checkpoints/step_0000004/{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert "distill.projector.0.weight" in a


def test_teachers_come_from_runs_and_exported_folders_with_adapted_channels(distill_run, tmp_path):
    _, _, _, run = distill_run  # a 1-channel run: its EMA teacher becomes a teacher here
    from_run = load_teacher_backbone(str(run), channels=1)
    exported = export_checkpoint(run, tmp_path / "export")
    from_folder = load_teacher_backbone(str(exported), channels=1)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(from_run(x)[0], from_folder(x)[0], atol=1e-5, rtol=0)
    # On RGB data the grey filter is split over three channels: same features on grey images.
    rgb = load_teacher_backbone(str(exported), channels=3)
    torch.testing.assert_close(rgb(x.repeat(1, 3, 1, 1))[0], from_folder(x)[0], atol=1e-5, rtol=0)
    # A model of another count (here 4, as a run on 4-channel data) adapts to none.
    adapt_input_channels(rgb.model, 4)
    rgb.model.save_pretrained(tmp_path / "four")
    with pytest.raises(ValueError, match="takes 4-channel images and the data has 3 channels"):
        load_teacher_backbone(str(tmp_path / "four"), channels=3)


def test_bad_teacher_settings_fail_naming_what_to_change(tmp_path):
    def distiller(*overrides: str):
        cfg = make_config("+experiment=smoke", *overrides)
        return build_distill_term(cfg.distill, 1, 48, cfg.augment, torch.device("cpu"))

    assert distiller() is None  # distill=none
    with pytest.raises((ValueError, MissingMandatoryValue), match="distill.model"):
        distiller("distill=teacher")
    with pytest.raises(ValueError, match="patch size 4.*local crops are 1x10x10"):
        distiller(*DISTILL, "augment.local_size=10")
    distiller(*DISTILL, "augment.local_size=10", "distill.teacher_views=global")  # not seen
    with pytest.raises(ValueError, match="no local crops"):
        distiller(*DISTILL, "augment.n_local=0")
    with pytest.raises(ConfigCompositionException) as err:
        distiller("distill.name=student")
    assert one_line(err.value) == "distill.name=student: valid choices: none, teacher"
    with pytest.raises(ConfigCompositionException) as err:
        distiller(*DISTILL, "distill.student_views=some")
    assert one_line(err.value) == "distill.student_views=some: valid choices: global, local, all"
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        distiller("distill=teacher", "distill.model=facebook/not-a-cached-model")


def test_view_indices():
    assert view_indices("global", 8) == [0, 1]
    assert view_indices("local", 8) == [2, 3, 4, 5, 6, 7]
    assert view_indices("all", 3) == [0, 1, 2]

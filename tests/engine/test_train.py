import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from dino_mx.checkpoint import latest_checkpoint, list_checkpoints, load_component
from dino_mx.train import train
from tests.conftest import make_config


def test_smoke_trains_end_to_end_and_saves_everything(tmp_path, smoke_config):
    run = tmp_path / "run"
    last = train(smoke_config(run, "trainer.eval_every=4"), run)
    assert math.isfinite(last["loss"]) and last["step"] == 3
    # Periodic k-NN on val: a real accuracy of the 2-class problem, not a placeholder.
    assert 0.25 < last["knn/val_accuracy_k20"] <= 1.0
    assert [p.name for p in list_checkpoints(run)] == ["step_0000002", "step_0000004"]
    ckpt = latest_checkpoint(run)
    assert ckpt.name == "step_0000004"
    for name in ("model.safetensors", "optimizer.safetensors", "rng_state_0.json", "config.yaml"):
        assert (ckpt / name).is_file()
    assert not list(ckpt.glob("*.pkl")) and not list(ckpt.glob("*.bin"))  # no pickle
    assert load_component(ckpt, "train_state")["step"] == 4
    assert "dino.center" in load_component(ckpt, "loss")
    assert any(k.startswith("backbone.model.") for k in load_component(ckpt, "teacher"))
    saved = (run / "config.yaml").read_text()
    assert "${" not in saved and str(run) in saved  # resolved, with the real run dir
    logged = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged] == [0, 1, 2, 3]
    assert {"lr", "wd", "momentum", "teacher_temp", "teacher_entropy", "center_norm"} <= set(
        logged[0]
    )
    assert any((run / "tb").rglob("events.out.tfevents.*"))


def state(ckpt):
    return (
        load_file(ckpt / "model.safetensors"),
        load_component(ckpt, "teacher"),
        load_component(ckpt, "loss"),
    )


@pytest.mark.parametrize("backend", ["per_sample", pytest.param("batched", marks=pytest.mark.slow)])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, smoke_config, backend):
    # freeze_last_layer 0.5: the heads' last layers first update after the resume point, with
    # no optimiser state saved for them.
    common = (
        "trainer.max_steps=6",
        "trainer.save_every=3",
        f"augment.backend={backend}",
        "optim.freeze_last_layer_ratio=0.5",
    )
    straight = tmp_path / "straight"
    train(smoke_config(straight, *common, "trainer.keep_last=0"), straight)
    # An interrupted run: only the step-3 checkpoint survived.
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints/step_0000003", resumed / "checkpoints/step_0000003")
    train(smoke_config(resumed, *common, "trainer.resume=true"), resumed)
    for a, b in zip(
        state(straight / "checkpoints/step_0000006"), state(resumed / "checkpoints/step_0000006")
    ):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_existing_run_is_not_overwritten_without_resume(tmp_path, smoke_config):
    run = tmp_path / "run"
    train(smoke_config(run, "trainer.max_steps=2"), run)
    with pytest.raises(FileExistsError, match="trainer.resume=true"):
        train(smoke_config(run, "trainer.max_steps=2"), run)


def test_missing_dataset_names_the_path(tmp_path, smoke_config):
    cfg = smoke_config(tmp_path, "data=bloodcells", f"data.root={tmp_path}/nowhere")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/nowhere/bloodcells_wbc_64.npz"):
        train(cfg, tmp_path / "run")


def test_missing_medmnist_file_says_where_and_how(tmp_path):
    cfg = make_config(
        "+experiment=pathmnist", f"data.root={tmp_path}", f"paths.output_dir={tmp_path}"
    )
    with pytest.raises(FileNotFoundError, match="pathmnist_224.npz") as err:
        train(cfg, tmp_path / "run")
    assert "zenodo" in str(err.value).lower() and "md5" in str(err.value).lower()


def test_collapse_monitors_match_their_definitions():
    from dino_mx.losses.objective import teacher_entropies

    def both(probs):
        out = teacher_entropies([probs])
        return out["teacher_entropy"], out["teacher_batch_entropy"]

    k = 8
    assert both(torch.full((4, k), 1.0 / k)) == pytest.approx((math.log(k), math.log(k)))
    one_prototype = torch.nn.functional.one_hot(torch.zeros(4, dtype=torch.long), k).float()
    assert both(one_prototype) == pytest.approx((0.0, 0.0), abs=1e-6)
    # Confident and spread: each sample one-hot on a prototype of its own.
    assert both(torch.eye(k)) == pytest.approx((0.0, math.log(k)), abs=1e-6)

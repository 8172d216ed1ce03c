"""Every user error of a ``dino-mx`` command is one line on stderr and exit status 2.

Bad values are refused before anything is built or written; ``+key=`` cannot add a key the
schema does not know; ``--debug`` / ``HYDRA_FULL_ERROR=1`` bring the traceback back; a bug
(not a user error) keeps its traceback.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hydra.errors import MissingConfigException

from dino_mx.cli import main
from dino_mx.errors import UserError, one_line, reports_errors

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_full_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # --debug sets HYDRA_FULL_ERROR=1 for the process; setenv (unlike delenv of an unset
    # variable) has monkeypatch restore the original state after each test.
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")


def error_line(capsys: pytest.CaptureFixture[str], prog: str = "dino-mx train") -> str:
    """The one line on stderr, without its ``PROG: error: `` prefix."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"{prog}: error: "), err
    return err.removeprefix(f"{prog}: error: ").rstrip("\n")


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("trainer.batch_size=0", "trainer.batch_size=0: must be an integer >= 1"),
        ("trainer.log_every=0", "trainer.log_every=0: must be an integer >= 1"),
        ("trainer.grad_accum=0", "trainer.grad_accum=0: must be an integer >= 1"),
        ("trainer.max_steps=-3", "trainer.max_steps=-3: must be an integer >= 1"),
        ("trainer.save_every=-1", "trainer.save_every=-1: must be a number >= 0"),
        ("trainer.keep_last=-2", "trainer.keep_last=-2: must be a number >= 0"),
        ("augment.n_local=-1", "augment.n_local=-1: must be a number >= 0"),
        ("augment.local_size=0", "augment.local_size=0: must be an integer >= 1"),
        ("method.head.out_dim=0", "method.head.out_dim=0: must be an integer >= 1"),
        ("augment.hflip=1.5", "augment.hflip=1.5: must be a probability in [0, 1]"),
        ("augment.blur=[1,2,0.5]", "augment.blur=[1.0, 2.0, 0.5]: must be a probability in [0, 1]"),
        (
            "augment.global_scale=[0.6,0.3]",
            "augment.global_scale=[0.6, 0.3]: must be [lo, hi] with 0 < lo <= hi <= 1",
        ),
        (
            "augment.local_scale=[0,0.3]",
            "augment.local_scale=[0.0, 0.3]: must be [lo, hi] with 0 < lo <= hi <= 1",
        ),
        ("optim.warmup_ratio=1.2", "optim.warmup_ratio=1.2: must be a probability in [0, 1]"),
        ("optim.lr=inf", "optim.lr=inf: must be a finite number > 0"),
        ("optim.lr=nan", "optim.lr=nan: must be a finite number > 0"),
        ("optim.lr=0", "optim.lr=0.0: must be a finite number > 0"),
        ("method.momentum_teacher=1.5", "method.momentum_teacher=1.5: must be a probability in"),
        ("model.num_heads=5", "model.hidden_size=48: must be a multiple of model.num_heads=5"),
        ("trainer.on_collapse=halt", "trainer.on_collapse=halt: valid choices: warn, stop, off"),
        ("data.on_bad_image=ignore", "data.on_bad_image=ignore: valid choices: raise, skip"),
        ("trainer.collapse_window=0", "trainer.collapse_window=0: must be an integer >= 1"),
        (
            "trainer.collapse_uniform_ratio=1.5",
            "trainer.collapse_uniform_ratio=1.5: must be in (0, 1]",
        ),
    ],
)
def test_bad_value_is_one_line_naming_key_value_and_range_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, line: str
) -> None:
    run = tmp_path / "run"
    assert main(["train", "+experiment=smoke", f"paths.output_dir={run}", override]) == 2
    assert error_line(capsys).startswith(line)
    assert not run.exists()  # refused before the folder, the Accelerator or a model


def test_every_bad_value_is_named_on_the_same_line(tmp_path, capsys):
    args = ["+experiment=smoke", f"paths.output_dir={tmp_path}/run"]
    assert main(["train", *args, "trainer.batch_size=0", "optim.warmup_ratio=-1"]) == 2
    assert error_line(capsys) == (
        "trainer.batch_size=0: must be an integer >= 1; "
        "optim.warmup_ratio=-1.0: must be a probability in [0, 1]"
    )


OPTIM_KEYS = (
    "name, lr, min_lr, warmup_ratio, weight_decay, weight_decay_end, betas, clip_grad, "
    "freeze_last_layer_ratio, layerwise_decay, patch_embed_lr_mult"
)


@pytest.mark.parametrize("override", ["optim.lrr=1", "+optim.lrr=1"])
def test_unknown_key_is_refused_even_when_added_with_plus(tmp_path, capsys, override):
    run = tmp_path / "run"
    assert main(["train", "+experiment=smoke", f"paths.output_dir={run}", override]) == 2
    assert error_line(capsys) == f"unknown key optim.lrr; valid keys of optim: {OPTIM_KEYS}"
    assert not run.exists()  # `+` used to train and write the typo into config.yaml


def test_unknown_nested_and_top_level_keys_are_named(tmp_path, capsys):
    args = ["train", "+experiment=smoke", f"paths.output_dir={tmp_path}/run"]
    assert main([*args, "+method.head.outdim=8"]) == 2
    assert error_line(capsys) == (
        "unknown key method.head.outdim; valid keys of method.head: "
        "out_dim, hidden_dim, bottleneck_dim, nlayers, norm_last_layer"
    )
    assert main([*args, "+epochs=3"]) == 2
    assert error_line(capsys).startswith("unknown key epochs; valid keys of the config: data, ")


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["adapter=lora", "adapter.num_layers=2"],
            "unknown key adapter.num_layers; valid keys of adapter=lora: "
            "name, r, alpha, dropout, bias, targets",
        ),
        (["adapter.r=4"], "unknown key adapter.r; valid keys of adapter=full: name"),
        (
            ["method.ibot.weight=0.1"],  # an iBOT key is DINOv2's only
            "unknown key method.ibot; valid keys of method=dinov1: name, head, ",
        ),
        (
            ["method.centering=mean"],
            "method.centering=mean: valid choices: softmax_center, sinkhorn_knopp",
        ),
        (["trainer.precision=fp8"], "trainer.precision=fp8: valid choices: auto, fp32, bf16, fp16"),
        (
            ["adapter=lora", "adapter.targets=query"],
            "adapter.targets=query: must be one of attention, attention_all, all_linear or a list",
        ),
        (
            ["adapter=lora", "adapter.name=freeze"],
            "adapter.name=freeze: choose the option instead (adapter=freeze)",
        ),
    ],
)
def test_each_option_has_its_own_keys_and_closed_choices(tmp_path, capsys, overrides, line):
    run = tmp_path / "run"
    assert main(["train", "+experiment=smoke", f"paths.output_dir={run}", *overrides]) == 2
    assert error_line(capsys).startswith(line)
    assert not run.exists()


def test_wrong_type_names_the_key(tmp_path, capsys):
    assert main(["train", "optim.lr=abc", f"paths.output_dir={tmp_path}"]) == 2
    line = error_line(capsys)
    assert line == "optim.lr: Value 'abc' of type 'str' could not be converted to Float"


def test_unknown_group_option_lists_the_valid_ones(capsys):
    assert main(["train", "model=vit_giant"]) == 2
    line = error_line(capsys)
    assert line.startswith("no config 'model/vit_giant'; valid choices of model: dino_vits16, ")
    assert "vit_micro" in line and "vit_tiny" in line


def test_missing_dataset_file_is_one_line_naming_the_path(tmp_path, capsys):
    args = ["data=bloodcells", f"data.root={tmp_path}/nowhere", f"paths.output_dir={tmp_path}/r"]
    assert main(["train", "+experiment=smoke", *args]) == 2
    assert f"{tmp_path}/nowhere/bloodcells_wbc_64.npz" in error_line(capsys)


def test_corrupt_npz_is_one_line_naming_the_path(tmp_path, capsys):
    bad = tmp_path / "cells.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a whole zip archive")
    args = ["data=npz", f"data.root={tmp_path}", "data.file=cells.npz"]
    assert main(["train", "+experiment=smoke", *args, f"paths.output_dir={tmp_path}/r"]) == 2
    assert str(bad) in error_line(capsys)


def test_eval_and_export_of_a_missing_run_are_one_line(tmp_path, capsys):
    missing = tmp_path / "no_run"
    assert main(["eval", "knn", "--ckpt", str(missing)]) == 2
    assert error_line(capsys, "dino-mx eval").startswith(f"no checkpoint in {missing}")
    assert main(["export", "--ckpt", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert error_line(capsys, "dino-mx export").startswith(f"no checkpoint in {missing}")


def test_debug_and_hydra_full_error_bring_the_traceback_back(tmp_path, monkeypatch):
    args = ["train", "trainer.log_every=0", f"paths.output_dir={tmp_path}"]
    with pytest.raises(UserError, match="trainer.log_every=0"):
        main(["--debug", *args])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(UserError, match="trainer.log_every=0"):
        main(args)


def test_a_bug_keeps_its_traceback_and_a_written_key_error_is_one_line(capsys):
    @reports_errors("dino-mx x")
    def bare_key() -> int:
        return {}["loss"]  # type: ignore[index]

    @reports_errors("dino-mx x")
    def runtime() -> int:
        raise RuntimeError("shape mismatch")

    @reports_errors("dino-mx x")
    def incompatible() -> int:
        raise KeyError("checkpoint weights do not fit the adapted model: unexpected [...]")

    with pytest.raises(KeyError):
        bare_key()
    with pytest.raises(RuntimeError):
        runtime()
    assert incompatible() == 2
    assert error_line(capsys, "dino-mx x").startswith("checkpoint weights do not fit")


def test_one_line_of_library_errors():
    error = MissingConfigException("In 'train': Could not find 'model/x'\n\nAvailable", "model/x")
    error.options = ["a", "b"]
    assert one_line(error) == "no config 'model/x'; valid choices of model: a, b"
    assert one_line(zipfile.BadZipFile("File is not a zip file")) == "File is not a zip file"
    assert one_line(PermissionError(13, "Permission denied", "/r/x")) == (
        "[Errno 13] Permission denied: '/r/x'"
    )
    assert one_line(ValueError("first\n  second")) == "first second"


@pytest.mark.slow  # two fresh interpreters: ~8 s each on an idle 2-core CPU, 25 s on a busy one
@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "dino_mx", "train"],
        # accelerate launch / torchrun run the script itself
        [sys.executable, str(ROOT / "dino_mx" / "train.py")],
    ],
    ids=["dino-mx", "script"],
)
def test_the_real_command_prints_one_line_and_exits_2(tmp_path, command):
    result = subprocess.run(
        [*command, "+experiment=smoke", "trainer.grad_accum=0", f"paths.output_dir={tmp_path}/r"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "dino-mx train: error: trainer.grad_accum=0: must be an integer >= 1\n"


class _BadImages(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        raise OSError("cannot read image /data/a/bad.png: image file is truncated")


def test_an_error_raised_in_a_loader_worker_is_its_own_one_line():
    # torch re-raises it as "Caught OSError in DataLoader worker process 0." plus a traceback.
    loader = torch.utils.data.DataLoader(_BadImages(), num_workers=1)
    with pytest.raises(OSError) as caught:
        next(iter(loader))
    assert "DataLoader worker process" in str(caught.value)
    assert one_line(caught.value) == "cannot read image /data/a/bad.png: image file is truncated"

"""``dino-mx demo`` (the README's main job) and ``python -m dino_mx``."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from dino_mx import demo
from tests.conftest import make_config

# The published raw-pixel row (README Quickstart): the baseline does not depend on training.
RAW_PIXELS = {"knn_val": 0.947, "knn_test": 0.843, "linear_val": 0.958, "linear_test": 0.849}
TINY = [
    "model.depth=1",
    "model.hidden_size=24",
    "method.head={out_dim: 64, hidden_dim: 64, bottleneck_dim: 32}",
    "trainer.batch_size=8",
    "augment.n_local=2",
    "trainer.progress=false",
]


def test_markdown_table_of_known_numbers():
    rows = {
        "raw pixels": dict(zip(demo.COLUMNS, (0.9466, 0.8429, 0.958, 1))),
        "vit, teacher": dict(zip(demo.COLUMNS, (0.0, 0.1234, 0.5, 0.25))),
    }
    assert demo.markdown(rows, 13.34) == (
        "| features (13.3 min training) | k-NN val | k-NN test | linear val | linear test |\n"
        "|---|---|---|---|---|\n"
        "| raw pixels | 0.947 | 0.843 | 0.958 | 1.000 |\n"
        "| vit, teacher | 0.000 | 0.123 | 0.500 | 0.250 |"
    )


def test_training_command_runs_the_package_with_the_overrides(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(demo.subprocess, "run", lambda cmd, check: calls.append((cmd, check)))
    demo.train_run(tmp_path, 2, ["optim.lr=1e-3", "+x=1"])
    assert calls == [
        (
            [
                sys.executable,
                "-m",
                "dino_mx",
                "train",
                "+experiment=pneumonia_cpu",
                f"paths.output_dir={tmp_path}",
                "trainer.resume=true",
                "optim.lr=1e-3",
                "+x=1",
                "trainer.max_steps=2",
            ],
            True,
        )
    ]


def test_arguments_after_double_dash_are_overrides():
    args = demo.build_parser().parse_args(["--steps", "3", "--run", "r", "--", "a=1", "--b=2"])
    assert (args.steps, args.run, args.tokens, args.overrides) == (3, "r", "cls", ["a=1", "--b=2"])


def test_a_bad_training_override_is_one_line_and_exit_status_2(tmp_path, capfd):
    assert demo.main(["--run", str(tmp_path / "run"), "--", "model=no_such_model"]) == 2
    err = capfd.readouterr().err  # written by the `dino-mx train` child
    assert err.startswith("dino-mx train: error: no config 'model/no_such_model'; valid choices")
    assert err.count("\n") == 1 and "training failed" not in err
    assert not (tmp_path / "run" / "eval").exists()


def test_python_m_dino_mx_help_prints_the_usage(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dino_mx", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: dino-mx COMMAND")
    for command in ("train", "eval", "export", "visualize", "demo"):
        assert re.search(rf"^  {command} ", result.stdout, re.MULTILINE), command


@pytest.mark.slow
def test_demo_trains_and_prints_the_four_row_table(tmp_path):
    """Two steps of a one-block ViT, then the full evaluation (~1.5 min on 2 cores)."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dino_mx", "demo", "--steps", "2", "--run", str(run), "--"]
    result = subprocess.run(
        [*cmd, *TINY], capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout[result.stdout.index("| features") :].splitlines()[:6]
    assert table[0].endswith("| k-NN val | k-NN test | linear val | linear test |")
    names = [line.split(" | ")[0].lstrip("| ") for line in table[2:]]
    assert names == [
        "raw pixels",
        "vit_micro, random init",
        "vit_micro, DINO student",
        "vit_micro, DINO teacher (EMA)",
    ]
    printed = {
        name: [float(v) for v in line.strip(" |").split(" | ")[1:]]
        for name, line in zip(names, table[2:])
    }
    assert all(len(v) == 4 and all(0 <= x <= 1 for x in v) for v in printed.values())
    assert printed["raw pixels"] == list(RAW_PIXELS.values())
    saved = json.loads((run / "eval" / "demo.json").read_text())
    assert saved["k"] == 20 and saved["tokens"] == "cls" and list(saved["rows"]) == names
    for name, values in printed.items():
        assert [round(v, 3) for v in saved["rows"][name].values()] == values
    assert (run / "eval" / "demo.md").read_text().splitlines() == table
    assert (run / "checkpoints" / "step_0000002").is_dir()


def test_baselines_are_composed_on_the_runs_own_data_and_model():
    # A run on another dataset: its saved sections, turned into overrides, compose back to them.
    run = make_config(
        "+experiment=pneumonia_cpu", "data=npz", "data.root=/data", "data.file=breast.npz",
        "data.name=breast", "model.patch_size=7",
    )  # fmt: skip
    composed = make_config(
        *demo.section_overrides("data", run.data),
        *demo.section_overrides("model", run.model, skip=("name",)),
        "model=vit_micro",
    )
    assert composed.data == run.data and composed.model == run.model
    assert composed.data.format == "npz" and composed.model.patch_size == 7

"""Two real CPU processes (gloo) through torchrun: the same script as a one-process run."""

import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
import torch

from dino_mx.data import InfiniteSampler, build_dataset
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]


def torchrun(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        *args,
    ]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.dist
@pytest.mark.parametrize(
    "overrides",
    [
        (),
        (
            "method=dinov2",
            "method.ibot.separate_head=true",
            "model.arch=dinov2",
            "method.koleo_gate=1",
        ),
    ],
    ids=["dinov1", "dinov2"],
)
@pytest.mark.slow
def test_two_processes_train_to_identical_weights_with_a_shared_centre(tmp_path, overrides):
    torchrun(
        str(ROOT / "tests/engine/dist_worker.py"),
        str(tmp_path / "run"),
        str(tmp_path),
        *overrides,
        cwd=tmp_path,
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    for part in ("student", "teacher"):
        for key in r0[part]:
            assert torch.equal(r0[part][key], r1[part][key]), (part, key)
    # Each rank saw different images, so equal centres mean they were averaged across ranks
    # (dinov2: the CLS centre and the iBOT patch centre, and the KoLeo gate's information EMA).
    assert r0["loss"].keys() == r1["loss"].keys() and r0["loss"]
    for key, center in r0["loss"].items():
        assert torch.equal(center, r1["loss"][key]) and center.abs().sum() > 0, key


@pytest.mark.dist
@pytest.mark.slow
def test_train_script_runs_under_torchrun(tmp_path):
    run = tmp_path / "run"
    torchrun(
        str(ROOT / "dino_mx/train.py"),
        "+experiment=smoke",
        f"paths.output_dir={run}",
        "trainer.progress=false",
        "trainer.max_steps=2",
        cwd=tmp_path,
    )
    ckpt = run / "checkpoints" / "step_0000002"
    assert sorted(p.name for p in ckpt.glob("rng_state_*")) == [
        "rng_state_0.json",
        "rng_state_0.safetensors",
        "rng_state_1.json",
        "rng_state_1.safetensors",
    ]


def test_each_rank_reads_a_disjoint_half_of_every_epoch():
    n = len(build_dataset(make_config().data))
    halves = [{i for i, _ in islice(InfiniteSampler(n, 0, rank, 2), n // 2)} for rank in (0, 1)]
    assert not halves[0] & halves[1] and len(halves[0] | halves[1]) == 2 * (n // 2)

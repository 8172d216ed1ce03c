"""Run by tests/engine/test_distributed.py under torchrun: train, then dump this rank's state."""

import os
import sys
from pathlib import Path

import torch

from dino_mx.checkpoint import DivergedError
from dino_mx.engine.run import build_trainer, make_accelerator
from tests.conftest import make_config

run_dir, out_dir, overrides = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
cfg = make_config(
    "+experiment=smoke",
    f"paths.output_dir={run_dir}",
    "trainer.progress=false",
    "trainer.max_steps=3",
    "trainer.save_every=0",
    *overrides,
)
acc = make_accelerator(cfg, run_dir)
evaluate = None
if scores := os.environ.get("DINO_MX_TEST_SCORES"):  # a scripted periodic evaluation
    accuracies = [float(v) for v in scores.split(",")]

    def evaluate(backbone, step, accelerator):  # called on the main process only
        return {"knn/val_accuracy_k20": accuracies.pop(0)}


trainer = build_trainer(cfg, run_dir, acc, evaluate)
if os.environ.get("DINO_MX_TEST_NAN_RANK") == str(acc.process_index):
    # Fault injection: this rank's loss is NaN from step 1 on, the other ranks' stays finite.
    objective = trainer.objective
    compute = objective.forward

    def poisoned(*args, **kwargs):
        out = compute(*args, **kwargs)
        if trainer.state.step >= 1:
            out.loss = out.loss * float("nan")
        return out

    objective.forward = poisoned
try:
    trainer.fit()
except DivergedError as error:  # every rank must get here, with the same message
    (out_dir / f"error{acc.process_index}.txt").write_text(str(error))
    sys.exit(0)
torch.save(
    {
        "world_size": acc.num_processes,
        "student": trainer.student.state_dict(),
        "teacher": trainer.teacher.state_dict(),
        "loss": trainer.objective.state_dict(),  # the teacher centres
    },
    out_dir / f"rank{acc.process_index}.pt",
)

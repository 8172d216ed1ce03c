"""Run by tests/engine/test_distributed.py under torchrun: train, then dump this rank's state."""

import sys
from pathlib import Path

import torch

from dino_mx.engine.trainer import Trainer, make_accelerator
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
trainer = Trainer(cfg, run_dir, acc)
trainer.fit()
torch.save(
    {
        "world_size": acc.num_processes,
        "student": acc.unwrap_model(trainer.student).state_dict(),
        "teacher": trainer.teacher.state_dict(),
        "loss": trainer.loss_fn.state_dict(),  # the teacher centres
    },
    out_dir / f"rank{acc.process_index}.pt",
)

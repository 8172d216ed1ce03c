"""Time the real dino-mx training loop on GPUs: images/s, peak memory, data-wait share.

One run of this script is one training run of the trainer (:class:`dino_mx.engine.trainer.Trainer`,
its own loop, loader and checkpoint) on a config composed from ``configs/`` exactly as
``dino-mx train`` composes it, with two measurements added around the loop and nothing changed
in it: every optimiser step is timed between ``torch.cuda.synchronize()`` calls, and the time
the step spends blocked on the data loader is counted. ``scripts/gpu_check.sh`` runs it for each
leg of the check; by hand:

    python scripts/gpu_check.py --adapter lora --json runs/gpu_check/results.jsonl
    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 4 \\
        scripts/gpu_check.py --leg ddp --json runs/gpu_check/results.jsonl
    python scripts/gpu_check.py --table runs/gpu_check/results.jsonl   # the markdown table

Extra arguments are Hydra overrides (``augment.backend=batched``, ``trainer.batch_size=32``).

Figures, from the steps after ``--warmup``:

- step (s): median wall time of one optimiser step, synchronised, on the main process;
- images/s: ``trainer.batch_size * grad_accum * processes`` / mean step time, all processes;
- data wait: share of the step time spent in ``next()`` on the loader (the GPU idles then);
- peak memory: ``torch.cuda.max_memory_allocated`` over the whole run, the largest of any
  process (the caching allocator reserves more; ``nvidia-smi`` shows that).

Every run ends with the trainer's own checkpoint save, outside the timed steps (under FSDP a
full-state gather, dino_mx/engine/fsdp.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate.state import PartialState
from accelerate.utils import set_seed
from omegaconf import DictConfig

from dino_mx.config import compose_train_config
from dino_mx.engine.build import LoopConfig, build_parts
from dino_mx.engine.resume import check_start
from dino_mx.engine.run import make_accelerator
from dino_mx.engine.schedules import StepHParams
from dino_mx.engine.trainer import Trainer
from dino_mx.engine.validate import validate_config

# ViT-S/16 at 224 px, random init, DINO multi-crop sizes (2 x 224 + n_local x 96).
VIT_S16 = [
    "model=vit_small",
    "model.patch_size=16",
    "model.image_size=224",
    "augment.global_size=224",
    "augment.local_size=96",
]
ADAPTERS = {
    "full": ["adapter=full"],
    "lora": ["adapter=lora", "adapter.r=8", "adapter.alpha=16"],
    "freeze": ["adapter=freeze", "adapter.num_layers=6"],
}


class TimedLoader:
    """Iterates a loader and adds the time spent waiting for each batch to ``self.wait``."""

    def __init__(self, loader: Any):
        self.loader, self.wait = loader, 0.0

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.wait += time.perf_counter() - start
            yield batch


class TimedTrainer(Trainer):
    """The trainer with each step timed between CUDA synchronisations; the loop is untouched."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.steps: list[tuple[float, float]] = []  # (step seconds, data-wait seconds)
        self.timed: TimedLoader | None = None
        self.peak_bytes = 0  # the largest max_memory_allocated of any process

    def loader(self) -> Any:
        self.timed = TimedLoader(super().loader())
        return self.timed

    def step(self, batches: Iterator[Any], hp: StepHParams, monitor: bool) -> dict:
        assert self.timed is not None
        torch.cuda.synchronize()
        wait, start = self.timed.wait, time.perf_counter()
        out = super().step(batches, hp, monitor)
        torch.cuda.synchronize()
        self.steps.append((time.perf_counter() - start, self.timed.wait - wait))
        if self.state.step == self.loop.max_steps - 1:
            # Gathered in the last step: fit() leaves the process group when the loop ends.
            peak = torch.tensor([torch.cuda.max_memory_allocated()], device=self.acc.device)
            self.peak_bytes = int(self.acc.gather(peak).max())
        return out


def compose_config(args: argparse.Namespace, overrides: list[str]) -> DictConfig:
    """The training config of this leg, composed as ``dino-mx train OVERRIDES`` would."""
    leg = [
        *VIT_S16,
        *ADAPTERS[args.adapter],
        f"trainer.precision={args.precision}",
        f"trainer.max_steps={args.steps}",
        "trainer.save_every=0",  # one save, at the end, outside the timed steps
        f"trainer.log_every={args.steps}",
        "trainer.eval_every=0",
        "trainer.progress=false",
        "trainer.on_collapse=off",
        f"paths.output_dir={args.run_dir}",
        *overrides,  # the user's last: they win
    ]
    return compose_train_config(leg)


def summarise(trainer: TimedTrainer, args: argparse.Namespace, cfg: DictConfig) -> dict:
    """The leg's figures from the steps after the warm-up (see the module docstring)."""
    acc, t = trainer.acc, cfg.trainer
    timed = trainer.steps[args.warmup :]
    if not timed:
        raise ValueError(f"--steps {args.steps} leaves no step after --warmup {args.warmup}")
    step_s = [s for s, _ in timed]
    images = t.batch_size * t.grad_accum * acc.num_processes
    return {
        "leg": args.leg,
        "adapter": args.adapter,
        "gpu": torch.cuda.get_device_name(acc.device),
        "processes": acc.num_processes,
        "distributed": str(acc.distributed_type).removeprefix("DistributedType."),
        "precision": acc.mixed_precision,
        "batch_per_process": t.batch_size,
        "trainable_params": sum(p.numel() for p in trainer.student.parameters() if p.requires_grad),
        "timed_steps": len(timed),
        "step_s": statistics.median(step_s),
        "images_per_s": images * len(step_s) / sum(step_s),
        "data_wait": sum(w for _, w in timed) / sum(step_s),
        "peak_mib": trainer.peak_bytes / 2**20,
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
    }


def run(args: argparse.Namespace, overrides: list[str]) -> dict:
    cfg = compose_config(args, overrides)
    validate_config(cfg)
    set_seed(cfg.trainer.seed)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    acc = make_accelerator(cfg, run_dir)
    parts, loop = build_parts(cfg, run_dir, acc), LoopConfig.from_config(cfg)
    trainer = TimedTrainer(parts, loop, acc, run_dir, resume_from=check_start(cfg, run_dir))
    trainer.fit()
    return summarise(trainer, args, cfg)


def table(path: Path) -> str:
    """Markdown table of the legs in ``path`` (JSON lines), with time and memory vs full."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    full = {r["leg"]: r for r in rows if r["adapter"] == "full"}
    lines = [
        "| leg | adapter | GPUs | step (s) | time / full | images/s | data wait "
        "| peak (MiB) | memory / full |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['leg']} | {r['adapter']} | | {r['error']} | | | | | |")
            continue
        base = full.get(r["leg"], r)
        time_ratio, memory_ratio = r["step_s"] / base["step_s"], r["peak_mib"] / base["peak_mib"]
        lines.append(
            f"| {r['leg']} | {r['adapter']} | {r['processes']} | {r['step_s']:.3f} | "
            f"{time_ratio:.2f} | {r['images_per_s']:,.0f} | {r['data_wait']:.0%} | "
            f"{r['peak_mib']:,.0f} | {memory_ratio:.2f} |"
        )
    first = next((r for r in rows if "gpu" in r), {})
    head = f"{first.get('date', '?')}, {first.get('gpu', '?')}, torch {first.get('torch', '?')}"
    return f"{head}\n\n" + "\n".join(lines)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--leg", default="single", help="label of this run in the table")
    p.add_argument("--adapter", choices=sorted(ADAPTERS), default="full")
    p.add_argument("--steps", type=int, default=40, help="optimiser steps in all")
    p.add_argument("--warmup", type=int, default=8, help="first steps left out (cuDNN, workers)")
    p.add_argument("--precision", default="bf16", help="trainer.precision")
    p.add_argument("--run-dir", default="runs/gpu_check/run", help="paths.output_dir")
    p.add_argument("--json", help="append this leg's figures to this JSON-lines file")
    p.add_argument("--table", type=Path, help="print the table of a results file and exit")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.table:
        print(table(args.table))
        return 0
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible to torch; run this on a GPU machine", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    result = run(args, overrides)
    if not PartialState().is_main_process:  # the process group is gone: ask the saved state
        return 0
    print(json.dumps(result))
    if args.json:
        with Path(args.json).open("a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DDP vs FSDP on CPU processes: step time and peak RSS per process, the same tiny config.

    python scripts/bench_dist.py                          # 2 processes, smoke model, 30 steps
    python scripts/bench_dist.py --steps 40 --warmup 5 -- model.hidden_size=96 model.depth=4

Each mode is one ``torchrun --nproc_per_node N`` run of this script (``--worker``) with gloo:
the trainer is built exactly as ``dino-mx train`` builds it (``trainer.fsdp=true`` or not) and
its real ``Trainer.step`` is timed after ``--warmup`` steps; each process reports its median
step time and its peak RSS (``ru_maxrss``), rank 0 prints them as JSON. A benchmark that prints
figures, not a test: on a 2-core machine, run it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "+experiment=smoke",
    "trainer.progress=false",
    "trainer.save_every=0",
    "trainer.eval_every=0",
    "trainer.on_collapse=off",
    "data.num_workers=0",
]
MODES = {"ddp": ["trainer.fsdp=false"], "fsdp": ["trainer.fsdp=true"]}


def worker(args: argparse.Namespace, overrides: list[str]) -> None:
    """One process of one mode: build, time ``steps`` real training steps, report."""
    from accelerate.utils import gather_object, set_seed

    from dino_mx.config import compose_train_config
    from dino_mx.engine.run import build_trainer, make_accelerator

    cfg = compose_train_config([*BASE, f"paths.output_dir={args.run_dir}", *overrides])
    set_seed(cfg.trainer.seed)
    run_dir = Path(args.run_dir)
    acc = make_accelerator(cfg, run_dir)
    trainer = build_trainer(cfg, run_dir, acc)
    trainer.learner.train()
    batches = iter(_endless(trainer.loader()))
    times = []
    for step in range(args.warmup + args.steps):
        hp = trainer.parts.schedules.at(step)
        start = time.perf_counter()
        trainer.step(batches, hp, monitor=False)
        times.append(time.perf_counter() - start)
        trainer.state.step += 1
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    mine = {"rank": acc.process_index, "step_s": statistics.median(times[args.warmup :])}
    mine["peak_rss_mib"] = rss_mib
    everyone = gather_object([mine])
    if acc.is_main_process:
        sharded = type(trainer.learner).__name__.startswith("FSDP")
        print(json.dumps({"processes": acc.num_processes, "sharded": sharded, "ranks": everyone}))
    acc.end_training()


def _endless(loader):
    while True:
        for views, _ in loader:
            yield views


def run_mode(mode: str, args: argparse.Namespace, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(args.nproc), str(Path(__file__).resolve()), "--worker",
            "--run-dir", tmp, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--", *MODES[mode], *overrides,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode:
            raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"mode": mode, **result}


def table(results: list[dict]) -> str:
    lines = [
        "| mode | processes | sharded | step (s), median over ranks | peak RSS per process (MiB) |",
        "|---|---:|---|---:|---|",
    ]
    for r in results:
        steps = statistics.median(x["step_s"] for x in r["ranks"])
        rss = " / ".join(
            f"{x['peak_rss_mib']:,.0f}" for x in sorted(r["ranks"], key=lambda x: x["rank"])
        )
        lines.append(f"| {r['mode']} | {r['processes']} | {r['sharded']} | {steps:.4f} | {rss} |")
    return "\n".join(lines)


def main() -> int:
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args, overrides)
        return 0
    results = [run_mode(mode, args, overrides) for mode in args.modes]
    print(table(results))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

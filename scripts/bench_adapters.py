"""The cost of each adapter, side by side: DINO-MX Table 10 (time and memory vs full).

    python scripts/bench_adapters.py                               # ViT-S/16, 224 px, this CPU
    python scripts/bench_adapters.py --device cuda --batch-size 64 --json runs/bench.json
    python scripts/bench_adapters.py --hidden-size 48 --depth 6 --num-heads 2 --image-size 32 \\
        --local-size 16 --patch-size 8 --batch-size 2 --out-dim 256 --steps 2 --warmup 1  # tiny

For each mode — full, LoRA r in {2, 4, 8, 16} (query+value), freeze N in {3, 6} — a fresh
subprocess composes the training config from ``configs/`` as ``dino-mx train`` does (the flags
become overrides: ``model.*``, ``augment.*``, ``method.head.*``, ``trainer.batch_size``,
``trainer.precision``, ``adapter=...``, with ``data.channels=3`` for RGB crops), builds the
trainer's parts with :func:`dino_mx.engine.build.build_parts` (random-init backbone with the
adapter, the method's heads and objective, AdamW, the EMA teacher sharing frozen weights) and
times the trainer's own step, :meth:`dino_mx.engine.trainer.Trainer.step`, on one fixed batch of
random crops: the Learner forward (teacher on the global crops, student on all, the objective),
backward, clipping, optimiser step, EMA update. Nothing of the step is re-implemented here, so
the benchmark follows the trainer. The data loader is left out: the step is timed, not the
augmentation. It reports the median step time after ``--warmup`` steps and the peak memory:
``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on a CPU (a fresh process
per mode, so one mode's memory cannot hide another's).

On a CPU, glibc's malloc keeps freed heap memory for reuse and raises its mmap threshold to
32 MiB as tensors come and go, so the peak RSS of the timing run is the allocator's high-water
mark, fragmentation included, not the memory the training needed. Memory is therefore taken in
a second fresh process per mode (1 warm-up + 1 step) with ``MALLOC_MMAP_THRESHOLD_`` fixed at
1 MiB: every tensor above 1 MiB is then its own mapping, returned to the system when freed, and
the peak RSS follows the live tensors, as CUDA's max allocated does on a GPU (mmap per tensor
slows steps, hence the separate pass). The table gives that peak ("peak"), the part above the
memory of Python, torch, transformers, Hydra and Accelerate held before the parts were built
("training": it also holds what building imports and loads, ~0.1 GB with the bundled images,
the same for every mode), and the timing run's peak RSS under the default allocator ("default
malloc"). Prints a table of ratios to full and writes ``--json``. A benchmark, not a test:
numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate.utils import set_seed
from omegaconf import DictConfig
from torch import Tensor

from dino_mx.config import compose_train_config
from dino_mx.engine.build import LoopConfig, build_parts
from dino_mx.engine.run import make_accelerator
from dino_mx.engine.trainer import Trainer
from dino_mx.engine.validate import validate_config

MMAP_KEY = "MALLOC_MMAP_THRESHOLD_"
MEMORY_ENV = {MMAP_KEY: str(2**20)}  # glibc: tensors above 1 MiB get their own mapping
MODES = ("full", "lora2", "lora4", "lora8", "lora16", "freeze3", "freeze6")


def adapter_overrides(mode: str) -> list[str]:
    """``full``, ``lora<r>`` (alpha = 2r, query+value) or ``freeze<N>`` as Hydra overrides."""
    if mode == "full":
        return ["adapter=full"]
    if mode.startswith("lora"):
        r = int(mode.removeprefix("lora"))
        return [
            "adapter=lora",
            f"adapter.r={r}",
            f"adapter.alpha={2 * r}",
            "adapter.targets=attention",
        ]
    if mode.startswith("freeze"):
        return ["adapter=freeze", f"adapter.num_layers={int(mode.removeprefix('freeze'))}"]
    raise ValueError(f"unknown mode '{mode}': full, lora<r> or freeze<N>")


def compose_config(mode: str, args: argparse.Namespace, run_dir: Path) -> DictConfig:
    """The training config of one mode, composed as ``dino-mx train OVERRIDES`` would."""
    overrides = [
        f"model.arch={args.arch}",
        f"model.hidden_size={args.hidden_size}",
        f"model.depth={args.depth}",
        f"model.num_heads={args.num_heads}",
        f"model.patch_size={args.patch_size}",
        f"model.image_size={args.image_size}",
        f"augment.global_size={args.image_size}",
        f"augment.local_size={args.local_size}",
        f"augment.n_local={args.n_local}",
        f"method.head.out_dim={args.out_dim}",
        f"method.head.hidden_dim={args.head_hidden}",
        f"method.head.bottleneck_dim={args.bottleneck}",
        *adapter_overrides(mode),
        "data.channels=3",  # RGB crops, as Table 10 (the bundled X-rays are grey)
        "data.num_workers=0",
        f"trainer.batch_size={args.batch_size}",
        f"trainer.precision={args.precision}",
        "trainer.progress=false",
        "trainer.eval_every=0",
        "trainer.save_every=0",
        # Every timed step is step 0: without this the heads' last layers would get no update,
        # as only in the first 1 % of a run.
        "optim.freeze_last_layer_ratio=0",
        f"paths.output_dir={run_dir}",
    ]
    return compose_train_config(overrides)


def _rss_bytes() -> int:
    """Resident set size of this process now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def _same_batch(crops: list[Tensor]) -> Iterator[list[Tensor]]:
    """The collated batch the loader would yield, the same one endlessly."""
    while True:
        yield crops


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    """Build one mode and time the trainer's steps (call in a fresh process)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_adapters_") as tmp:
        run_dir = Path(tmp)
        cfg = compose_config(mode, args, run_dir)
        validate_config(cfg)
        set_seed(cfg.trainer.seed)
        acc = make_accelerator(cfg, run_dir)
        device = acc.device
        if device.type != args.device:
            raise RuntimeError(f"--device {args.device}, but Accelerate chose {device}")
        runtime = 0 if device.type == "cuda" else _rss_bytes()  # Python, torch, Hydra, ...
        parts = build_parts(cfg, run_dir, acc)
        trainer = Trainer(parts, LoopConfig.from_config(cfg), acc, run_dir)
        trainer.learner.train()  # as Trainer.fit
        b, g, loc = args.batch_size, args.image_size, args.local_size
        c = parts.dataset.channels  # type: ignore[attr-defined]
        crops = [torch.randn(b, c, g, g, device=device) for _ in range(2)]
        crops += [torch.randn(b, c, loc, loc, device=device) for _ in range(args.n_local)]
        batches, hp = _same_batch(crops), parts.schedules.at(0)

        def step() -> None:
            trainer.step(batches, hp, monitor=False)
            if device.type == "cuda":
                torch.cuda.synchronize()

        for _ in range(args.warmup):
            step()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device)
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        student = trainer.student
        acc.end_training()  # close the TensorBoard writer before its folder goes
    return {
        "mode": mode,
        "total_params": sum(p.numel() for p in student.parameters()),
        "trainable_params": sum(p.numel() for p in student.parameters() if p.requires_grad),
        "step_s": statistics.median(times),
        "step_times_s": times,
        "peak_bytes": peak,
        "runtime_bytes": runtime,
        "train_bytes": peak - runtime,
        "memory": "cuda_max_allocated" if device.type == "cuda" else "peak_rss",
    }


def measure(modes: list[str], argv: list[str], device: str) -> list[dict]:
    """Run every mode in its own subprocess, one after the other; on a CPU, memory comes from a
    second subprocess where RSS follows the live tensors (module docstring).
    """
    # Accelerate picks the device itself: a CPU run on a GPU machine must not see the GPU.
    env = {"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}
    results = []
    for mode in modes:
        result = _worker(mode, argv, env)
        if device == "cpu":
            memory = _worker(mode, [*argv, "--warmup", "1", "--steps", "1"], env | MEMORY_ENV)
            result["peak_bytes_default_malloc"] = result["peak_bytes"]
            result.update({k: memory[k] for k in ("peak_bytes", "runtime_bytes", "train_bytes")})
            result["memory"] = f"peak_rss with {MMAP_KEY}={MEMORY_ENV[MMAP_KEY]}"
        results.append(result)
        step_s, mib = result["step_s"], result["peak_bytes"] / 2**20
        print(f"  {mode:<8} {step_s:.4f} s/step  {mib:,.0f} MiB", flush=True)
    return results


def _worker(mode: str, argv: list[str], env: dict[str, str] | None = None) -> dict:
    """One mode in a fresh subprocess; returns its :func:`run_mode` result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", mode]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"mode {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    """Markdown table of step time and peak memory, absolute and as ratios to ``full``.

    ``peak`` is the whole process (CPU: peak RSS of the memory pass, runtime included; GPU: max
    allocated); ``training`` is the peak above the memory the process held before building the
    model (on a GPU the two are equal); ``default malloc`` is the timing run's peak RSS (CPU).
    """
    full = next((r for r in results if r["mode"] == "full"), results[0])
    cpu = "peak_bytes_default_malloc" in full
    header = "| mode | trainable params | step (s) | time / full | peak (MiB) | peak / full "
    header += "| training (MiB) | training / full |"
    header += " default malloc (MiB) | default / full |" if cpu else ""
    lines = [header, "|---|" + "---:|" * (header.count("|") - 2)]
    mib = 2**20
    for r in results:
        row = (
            f"| {r['mode']} | {r['trainable_params']:,} | {r['step_s']:.4f} | "
            f"{r['step_s'] / full['step_s']:.2f} | {r['peak_bytes'] / mib:,.0f} | "
            f"{r['peak_bytes'] / full['peak_bytes']:.2f} | {r['train_bytes'] / mib:,.0f} | "
            f"{r['train_bytes'] / max(full['train_bytes'], 1):.2f} |"
        )
        if cpu:
            default = r["peak_bytes_default_malloc"]
            row += f" {default / mib:,.0f} | {default / full['peak_bytes_default_malloc']:.2f} |"
        lines.append(row)
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modes", nargs="+", default=list(MODES), help="full, lora<r>, freeze<N>")
    p.add_argument("--arch", default="vit", choices=("vit", "dinov2"))
    p.add_argument("--hidden-size", type=int, default=384, help="ViT-S: 384")
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--num-heads", type=int, default=6)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=224, help="global crops")
    p.add_argument("--local-size", type=int, default=96)
    p.add_argument("--n-local", type=int, default=8, help="local crops (DINO: 8-10)")
    p.add_argument("--batch-size", type=int, default=8, help="images per crop")
    p.add_argument("--out-dim", type=int, default=65536, help="DINO head prototypes")
    p.add_argument("--head-hidden", type=int, default=2048)
    p.add_argument("--bottleneck", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (allocator, AdamW state)")
    p.add_argument("--steps", type=int, default=5, help="timed steps; the median is reported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: default")
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    p.add_argument("--device", choices=("cpu", "cuda"), default=default_device)
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="GPU: bf16")
    p.add_argument("--json", default="runs/bench_adapters.json", help="results file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.precision is None:
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_mode(args.worker, args)))
        return 0
    modes = [m for m in args.modes if not (m.startswith("freeze") and int(m[6:]) > args.depth)]
    for skipped in sorted(set(args.modes) - set(modes)):
        print(f"skipping {skipped}: the model has {args.depth} blocks")
    print(
        f"{args.arch} width {args.hidden_size} depth {args.depth} patch {args.patch_size}, "
        f"batch {args.batch_size} x (2 x {args.image_size} px + {args.n_local} x "
        f"{args.local_size} px), head {args.out_dim}, {args.device} {args.precision}"
    )
    results = measure(modes, argv, args.device)
    print(table(results))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k != "worker"}
    env = {"torch": torch.__version__, "python": platform.python_version()}
    out.write_text(json.dumps({"config": config, "env": env, "results": results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The cost of each adapter, side by side: DINO-MX Table 10 (time and memory vs full).

    python scripts/bench_adapters.py                               # ViT-S/16, 224 px, this CPU
    python scripts/bench_adapters.py --device cuda --batch-size 64 --json runs/bench.json
    python scripts/bench_adapters.py --hidden-size 48 --depth 6 --num-heads 2 --image-size 32 \\
        --local-size 16 --patch-size 8 --batch-size 2 --out-dim 256 --steps 2 --warmup 1  # tiny

For each mode — full, LoRA r in {2, 4, 8, 16} (query+value), freeze N in {3, 6} — a fresh
subprocess builds the random-init backbone with the adapter, the DINO head and the EMA teacher
(sharing frozen weights, as the trainer does), and times complete DINO training steps on random
crops: teacher forward on the global crops, student forward on all, loss, backward, clipping,
AdamW step, EMA update. It reports the median step time after ``--warmup`` steps and the peak
memory: ``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on a CPU (a fresh
process per mode, so one mode's memory cannot hide another's).

On a CPU, glibc's malloc keeps freed heap memory for reuse and raises its mmap threshold to
32 MiB as tensors come and go, so the peak RSS of the timing run is the allocator's high-water
mark, fragmentation included, not the memory the training needed. Memory is therefore taken in
a second fresh process per mode (1 warm-up + 1 step) with ``MALLOC_MMAP_THRESHOLD_`` fixed at
1 MiB: every tensor above 1 MiB is then its own mapping, returned to the system when freed, and
the peak RSS follows the live tensors, as CUDA's max allocated does on a GPU (mmap per tensor
slows steps, hence the separate pass). The table gives that peak ("peak"), the part above the
~0.9 GB of Python, torch and transformers held before the model was built ("training"), and the
timing run's peak RSS under the default allocator ("default malloc"). Prints a table of ratios
to full and writes ``--json``. A benchmark, not a test: numbers depend on the machine and its
load.
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
import time
from pathlib import Path

import torch

from dino_mx.config import AdapterConfig
from dino_mx.engine.trainer import param_groups
from dino_mx.losses import DINOLoss
from dino_mx.models import Backbone, DINOHead, MultiCropModel, random_init_model
from dino_mx.models.adapters import apply_adapter
from dino_mx.teacher import build_teacher, ema_update

MMAP_KEY = "MALLOC_MMAP_THRESHOLD_"
MEMORY_ENV = {MMAP_KEY: str(2**20)}  # glibc: tensors above 1 MiB get their own mapping
MODES = ("full", "lora2", "lora4", "lora8", "lora16", "freeze3", "freeze6")


def adapter_config(mode: str) -> AdapterConfig:
    """``full``, ``lora<r>`` (alpha = 2r) or ``freeze<N>`` as an adapter config."""
    if mode == "full":
        return AdapterConfig(name="full")
    if mode.startswith("lora"):
        r = int(mode.removeprefix("lora"))
        return AdapterConfig(name="lora", r=r, alpha=2.0 * r, targets="attention")
    if mode.startswith("freeze"):
        return AdapterConfig(name="freeze", num_layers=int(mode.removeprefix("freeze")))
    raise ValueError(f"unknown mode '{mode}': full, lora<r> or freeze<N>")


def _rss_bytes() -> int:
    """Resident set size of this process now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    """Build one mode and time its training steps (call in a fresh process)."""
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runtime = 0 if device.type == "cuda" else _rss_bytes()  # Python + torch + transformers
    model = random_init_model(
        args.arch,
        num_channels=3,
        image_size=args.image_size,
        patch_size=args.patch_size,
        hidden_size=args.hidden_size,
        depth=args.depth,
        num_heads=args.num_heads,
    )
    backbone = Backbone(model)
    for name, p in backbone.named_parameters():
        if name.endswith("mask_token"):  # as the trainer: DINOv1 never masks
            p.requires_grad_(False)
    apply_adapter(backbone, adapter_config(mode))
    head = DINOHead(backbone.embed_dim, args.out_dim, args.head_hidden, args.bottleneck)
    student = MultiCropModel(backbone, head).to(device).train()
    teacher = build_teacher(student, share_frozen=True)
    loss_fn = DINOLoss(args.out_dim).to(device)
    optimizer = torch.optim.AdamW(param_groups(student), lr=1e-4, weight_decay=0.04)
    g, loc, b = args.image_size, args.local_size, args.batch_size
    crops = [torch.randn(b, 3, g, g, device=device) for _ in range(2)]
    crops += [torch.randn(b, 3, loc, loc, device=device) for _ in range(args.n_local)]
    use_bf16 = args.precision == "bf16"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            with torch.no_grad():
                teacher_out = teacher(crops[:2])
            loss = loss_fn(student(crops), teacher_out, 0.04)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema_update(teacher, student, 0.996)
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


def measure(modes: list[str], argv: list[str], memory_pass: bool) -> list[dict]:
    """Run every mode in its own subprocess, one after the other; with ``memory_pass`` (CPU),
    memory comes from a second subprocess where RSS follows the live tensors (module docstring).
    """
    results = []
    for mode in modes:
        result = _worker(mode, argv)
        if memory_pass:
            memory = _worker(mode, [*argv, "--warmup", "1", "--steps", "1"], MEMORY_ENV)
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
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="GPU: bf16")
    p.add_argument("--json", default="runs/bench_adapters.json", help="results file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.precision is None:
        args.precision = "bf16" if args.device.startswith("cuda") else "fp32"
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
    results = measure(modes, argv, memory_pass=not args.device.startswith("cuda"))
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

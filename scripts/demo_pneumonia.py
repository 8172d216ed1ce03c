"""The README's main job: train DINO on the bundled PneumoniaMNIST, then compare frozen features.

    python scripts/demo_pneumonia.py                      # ~15 min on 2 CPU cores, offline
    python scripts/demo_pneumonia.py --run runs/demo --steps 300 -- optim.lr=2e-3

Trains ``+experiment=pneumonia_cpu`` (resuming if the run already has checkpoints), then
evaluates raw pixels, the same architecture at random init, and the trained student and EMA
teacher with the weighted k-NN and the linear probe on val and test, all on the CLS token by
default. The student row shows whether the teacher's average keeps up with it in a run this
short (README, "Which network"). Prints one table and writes it to
``RUN/eval/demo.json`` and ``RUN/eval/demo.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from dino_mx.eval.cli import evaluate_knn, evaluate_linear

EXPERIMENT = "pneumonia_cpu"
K = 20  # DINO reports k = 20


def train(run: Path, steps: int | None, overrides: list[str]) -> float:
    """Run ``dino-mx train`` as a user would; returns the wall-clock seconds."""
    cmd = [
        sys.executable,
        "-m",
        "dino_mx.cli",
        "train",
        f"+experiment={EXPERIMENT}",
        f"paths.output_dir={run}",
        "trainer.resume=true",
        *overrides,
    ]
    if steps is not None:
        cmd.append(f"trainer.max_steps={steps}")
    print("$", " ".join(cmd[2:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def scores(tokens: str, **network) -> dict[str, float]:
    """k-NN (k=20) and linear-probe accuracy on val and test for one network."""
    row = {}
    for split in ("val", "test"):
        knn = evaluate_knn(**network, tokens=tokens, split=split, ks=(10, K, 100, 200))
        row[f"knn_{split}"] = knn["metrics"][str(K)]["accuracy"]
    linear = evaluate_linear(**network, tokens=tokens)
    row["linear_val"], row["linear_test"] = linear["val"]["accuracy"], linear["test"]["accuracy"]
    return row


def markdown(rows: dict[str, dict[str, float]], minutes: float) -> str:
    cols = ("knn_val", "knn_test", "linear_val", "linear_test")
    lines = [
        f"| features ({minutes:.1f} min training) | k-NN val | k-NN test | linear val "
        "| linear test |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=f"runs/{EXPERIMENT}", help="run directory")
    parser.add_argument("--steps", type=int, default=None, help="override trainer.max_steps")
    parser.add_argument(
        "--tokens",
        default="cls",
        choices=("cls", "cls+mean"),
        help="features: CLS (default; best for the trained networks), or CLS + mean patch token",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for training")
    args = parser.parse_args()
    run = Path(args.run).resolve()

    seconds = train(run, args.steps, args.overrides)
    cfg = OmegaConf.load(run / "config.yaml")
    model_overrides = [
        f"model.{k}={'null' if v is None else v}" for k, v in cfg.model.items() if k != "name"
    ]
    cache = run / "eval" / "features"
    rows = {
        "raw pixels": scores("cls", baseline="pixels", cache_dir=cache),
        f"{cfg.model.name}, random init": scores(
            args.tokens, model=cfg.model.name, overrides=model_overrides, cache_dir=cache
        ),
        f"{cfg.model.name}, DINO student": scores(args.tokens, ckpt=run, which="student"),
        f"{cfg.model.name}, DINO teacher (EMA)": scores(args.tokens, ckpt=run),
    }
    table = markdown(rows, seconds / 60)
    print(
        f"\nPneumoniaMNIST (bundled), k-NN k={K} and linear-probe accuracy; tokens "
        f"{args.tokens}\n{table}"
    )
    out = run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.md").write_text(table + "\n")
    (out / "demo.json").write_text(
        json.dumps(
            {"train_seconds": seconds, "tokens": args.tokens, "k": K, "rows": rows}, indent=2
        )
    )
    print(f"saved {out / 'demo.md'} and demo.json")


if __name__ == "__main__":
    main()

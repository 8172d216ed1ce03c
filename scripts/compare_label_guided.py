"""Label-guided crops against plain multi-crop on BCCD, at an equal budget, judged by how well
the teacher's attention localises white blood cells.

Launch it from the repository root:

    .venv/bin/python scripts/compare_label_guided.py --data-root ../shared/data
    .venv/bin/python scripts/compare_label_guided.py --data-root ../shared/data --seeds 0 1 2
    .venv/bin/python scripts/compare_label_guided.py --data-root ../shared/data --steps 5 \\
        --out runs/lg_check -- model.depth=1 trainer.batch_size=8 data.num_workers=0  # a check

For each seed it trains ``+experiment=bccd_roi`` twice with the same steps, batch and number of
views: ``augment=multicrop`` with ``n_local + roi_crops`` random local crops, and
``augment=label_guided`` with ``n_local`` random local crops plus ``roi_crops`` crops centred
on boxes of ``--guide`` (WBC). Then, for each run: ``dino-mx eval localize`` on the test split
(``RUN/eval/localize.json``) and attention / PCA grids of ``--n`` test images
(``RUN/samples/``). The table is printed and saved as ``OUT/comparison.md`` and ``.json``.
Runs that already hold a checkpoint of ``--steps`` steps are not retrained.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from dino_mx.checkpoint import latest_checkpoint
from dino_mx.eval.localize import evaluate_localize
from dino_mx.eval.network import NetworkSpec
from dino_mx.eval.visualize import visualize

SCORES = ("precision", "recall", "pointing", "box_fraction")


def train_command(args: argparse.Namespace, augment: str, seed: int, run: Path) -> list[str]:
    """The ``dino-mx train`` command of one run (same budget and view count for both)."""
    views = (
        [f"augment.n_local={args.n_local + args.roi_crops}"]
        if augment == "multicrop"
        else [
            f"augment.n_local={args.n_local}",
            f"augment.roi_crops={args.roi_crops}",
            f"augment.roi_prob={args.roi_prob}",
            f"augment.roi_classes=[{args.guide}]",
        ]
    )
    return [
        sys.executable,
        "-m",
        "dino_mx.cli",
        "train",
        "+experiment=bccd_roi",
        f"augment={augment}",
        f"data.root={Path(args.data_root).resolve()}",
        f"data.size={args.size}",
        f"trainer.max_steps={args.steps}",
        f"trainer.seed={seed}",
        f"paths.output_dir={run.resolve()}",
        *views,
        *args.overrides,
    ]


def trained_steps(run: Path) -> int:
    ckpt = latest_checkpoint(run) if run.is_dir() else None
    return int(ckpt.name.removeprefix("step_")) if ckpt is not None else 0


def run_one(args: argparse.Namespace, augment: str, seed: int) -> dict:
    """Train (unless done), score localisation and draw the figures of one run."""
    run = Path(args.out) / f"{augment}_seed{seed}"
    done = trained_steps(run)
    if done > args.steps:
        raise SystemExit(f"{run} already trained {done} > {args.steps} steps: use another --out")
    if done < args.steps:
        command = train_command(args, augment, seed, run)
        command += ["trainer.resume=true"] if done else []
        print("$ dino-mx", " ".join(command[3:]), flush=True)
        subprocess.run(command, check=True)
    spec = NetworkSpec(ckpt=run)
    result = evaluate_localize(
        spec, roi_class=args.roi_class, keep=args.keep, image_size=args.image_size
    )
    for kind in ("attention", "pca"):
        visualize(kind, spec, n=args.n, keep=args.keep, roi_class=args.roi_class)
    return {"augment": augment, "seed": seed, "run": str(run), **result["metrics"]}


def summary(rows: list[dict], args: argparse.Namespace) -> str:
    """Markdown table: one line per run, then the mean (and std over seeds) per augmentation."""
    lines = [
        f"{args.roi_class} localisation on BCCD test ({args.steps} steps, keep {args.keep}); "
        "chance precision = the boxes' share of the image",
        "",
        "| run | precision | recall | pointing | chance precision |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['augment']} seed {r['seed']} | "
            + " | ".join(f"{r[s]:.4f}" for s in SCORES)
            + " |"
        )
    for augment in ("multicrop", "label_guided"):
        group = [r for r in rows if r["augment"] == augment]
        if len(group) > 1:
            cells = []
            for s in SCORES:
                values = [r[s] for r in group]
                cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}")
            lines.append(f"| {augment} mean ± std | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="folder holding bccd_roi_128.npz")
    parser.add_argument("--size", type=int, default=128, help="BCCD file: 128 or 256 px")
    parser.add_argument("--out", default="runs/compare_lg", help="folder of the runs")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps of each run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n-local", type=int, default=6, help="random local crops")
    parser.add_argument("--roi-crops", type=int, default=2, help="ROI crops (label_guided)")
    parser.add_argument("--roi-prob", type=float, default=0.5)
    parser.add_argument("--guide", default="WBC", help="class the ROI crops centre on")
    parser.add_argument("--roi-class", default="WBC", help="class whose boxes are scored")
    parser.add_argument("--keep", type=float, default=0.6, help="attention mass kept")
    parser.add_argument("--image-size", type=int, help="localisation input (default: global)")
    parser.add_argument("--n", type=int, default=8, help="test images in the figures")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs (after --)")
    args = parser.parse_args(argv)
    rows = [run_one(args, a, s) for s in args.seeds for a in ("multicrop", "label_guided")]
    table = summary(rows, args)
    print(table)
    out = Path(args.out)
    (out / "comparison.md").write_text(table + "\n")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

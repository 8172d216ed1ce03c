"""``dino-mx demo``: train DINO on the bundled PneumoniaMNIST, then compare frozen features.

    dino-mx demo                                    # ~9-15 min on 2 CPU cores, offline
    dino-mx demo --run runs/demo --steps 300 -- optim.lr=2e-3 augment.brightness=0.4
    dino-mx demo --run runs/breast -- data=medmnist data.flag=breastmnist data.root=/data
    python -m dino_mx demo                          # the same

Trains ``+experiment=pneumonia_cpu`` with ``dino-mx train`` in a child process (resuming if the
run already has checkpoints; Hydra overrides after ``--`` go to training), then evaluates raw
pixels, the same architecture at random init, and the trained student and EMA teacher with the
weighted k-NN (k = 20) and the linear probe on val and test, all on the CLS token by default;
with ``data=...`` overrides, the same on that data (the recipe's other values untouched).
The student row shows whether the teacher's average keeps up with it in a run this short
(docs/results.md, "Which network"). Prints one table and writes it to ``RUN/eval/demo.json``
and ``RUN/eval/demo.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dino_mx.errors import USER_ERROR_STATUS, reports_errors

EXPERIMENT = "pneumonia_cpu"
K = 20  # DINO reports k = 20
COLUMNS = {
    "knn_val": "k-NN val",
    "knn_test": "k-NN test",
    "linear_val": "linear val",
    "linear_test": "linear test",
}


def train_run(run: Path, steps: int | None, overrides: list[str]) -> float:
    """Run ``dino-mx train +experiment=pneumonia_cpu`` as a user would, resuming ``run``.

    The child is ``python -m dino_mx`` of this interpreter, so it trains with the installed
    package and its packaged configs, wherever the current directory is.

    Args:
        run: Run directory (``paths.output_dir``).
        steps: ``trainer.max_steps``, or None for the experiment's.
        overrides: More Hydra overrides, applied after the experiment's.

    Returns:
        The wall-clock seconds training took.

    Raises:
        subprocess.CalledProcessError: Training failed.
    """
    cmd = [
        sys.executable,
        "-m",
        "dino_mx",
        "train",
        f"+experiment={EXPERIMENT}",
        f"paths.output_dir={run}",
        "trainer.resume=true",
        *overrides,
    ]
    if steps is not None:
        cmd.append(f"trainer.max_steps={steps}")
    print("$ dino-mx", " ".join(cmd[3:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def scores(tokens: str, cache_dir: Path | None = None, **network: Any) -> dict[str, float]:
    """k-NN (k = 20) and linear-probe accuracy on val and test for one network.

    Args:
        tokens: ``cls`` or ``cls+mean``.
        cache_dir: Feature cache folder (default for a checkpoint: the run's).
        **network: What names the network: the fields of
            :class:`~dino_mx.eval.network.NetworkSpec` (``ckpt`` + ``which``, ``model`` +
            ``overrides``, or ``baseline``).

    Returns:
        ``{knn_val, knn_test, linear_val, linear_test}`` accuracies.
    """
    from dino_mx.eval.cli import evaluate_knn, evaluate_linear
    from dino_mx.eval.network import NetworkSpec

    spec, row = NetworkSpec(**network), {}
    for split in ("val", "test"):
        knn = evaluate_knn(
            spec, tokens=tokens, split=split, ks=(10, K, 100, 200), cache_dir=cache_dir
        )
        row[f"knn_{split}"] = knn["metrics"][str(K)]["accuracy"]
    linear = evaluate_linear(spec, tokens=tokens, cache_dir=cache_dir)
    row["linear_val"], row["linear_test"] = linear["val"]["accuracy"], linear["test"]["accuracy"]
    return row


def section_overrides(section: str, node: DictConfig, skip: tuple[str, ...] = ()) -> list[str]:
    """``SECTION.KEY=VALUE`` for every key of a run's saved config section but ``skip``, so a
    baseline is built and evaluated exactly as the run was (its data: any format, root and
    statistics; its architecture)."""
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    return [
        f"{section}.{k}={'null' if v is None else json.dumps(v)}"
        for k, v in values.items()
        if k not in skip
    ]


def compare(run: Path, tokens: str) -> dict[str, dict[str, float]]:
    """The demo's four rows: raw pixels, random init, DINO student, DINO teacher (EMA).

    The baselines read the run's data; the random-init network is the run's architecture (its
    ``model.*`` keys) at seed 0. The trained rows come from the run's best checkpoint when its
    periodic evaluation picked one (``trainer.eval_every``), else its latest.
    """
    cfg = OmegaConf.load(run / "config.yaml")
    name = cfg.model.name
    model_overrides = section_overrides("model", cfg.model, skip=("name",))
    data = section_overrides("data", cfg.data)
    cache = run / "eval" / "features"
    return {
        "raw pixels": scores("cls", baseline="pixels", overrides=data, cache_dir=cache),
        f"{name}, random init": scores(
            tokens, model=name, overrides=[*data, *model_overrides], cache_dir=cache
        ),
        f"{name}, DINO student": scores(tokens, ckpt=run, which="student"),
        f"{name}, DINO teacher (EMA)": scores(tokens, ckpt=run),
    }


def markdown(rows: dict[str, dict[str, float]], minutes: float) -> str:
    """The comparison as a Markdown table, accuracies to three decimals."""
    lines = [
        f"| features ({minutes:.1f} min training) | " + " | ".join(COLUMNS.values()) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``dino-mx demo`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="dino-mx demo",
        description="Train DINO on the bundled PneumoniaMNIST, then compare frozen features.",
        epilog="Hydra overrides for training go after `--`, e.g. "
        "`dino-mx demo -- augment.brightness=0.4`.",
    )
    parser.add_argument(
        "--run", default=f"runs/{EXPERIMENT}", help=f"run directory (default runs/{EXPERIMENT})"
    )
    parser.add_argument("--steps", type=int, default=None, help="override trainer.max_steps")
    parser.add_argument(
        "--tokens",
        default="cls",
        choices=("cls", "cls+mean"),
        help="features: CLS (default; best for the trained networks), or CLS + mean patch token",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for training")
    return parser


@reports_errors("dino-mx demo")
def main(argv: list[str] | None = None) -> int:
    """Run ``dino-mx demo``; returns the exit status (1: training failed, 2: bad usage)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on errors
        return int(exit_.code or 0)
    run = Path(args.run).expanduser().resolve()
    try:
        seconds = train_run(run, args.steps, args.overrides)
    except subprocess.CalledProcessError as err:
        if err.returncode == USER_ERROR_STATUS:  # `dino-mx train` printed the one line
            return USER_ERROR_STATUS
        print(f"dino-mx demo: training failed (exit status {err.returncode})", file=sys.stderr)
        return 1
    rows = compare(run, args.tokens)
    table = markdown(rows, seconds / 60)
    data = OmegaConf.load(run / "config.yaml").data.name
    print(f"\n{data}, k-NN k={K} and linear-probe accuracy; tokens {args.tokens}\n{table}")
    out = run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.md").write_text(table + "\n")
    record = {"train_seconds": seconds, "tokens": args.tokens, "k": K, "rows": rows}
    (out / "demo.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out / 'demo.md'} and demo.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

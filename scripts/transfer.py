"""Does the default recipe transfer? Train ``+experiment=pneumonia_cpu`` untouched on every
dataset at hand (only ``data=...`` changes) with ``dino-mx demo``, and print one table.

    python scripts/subsample_npz.py ../shared/data/pneumoniamnist.npz data/pneumonia_546.npz \\
        --train 546 --val 78
    python scripts/subsample_npz.py ../shared/data/bloodcells_wbc_28.npz data/bloodcells_1080.npz \\
        --train 1080 --val 120
    python scripts/transfer.py --runs runs/transfer --shared ../shared/data --subsets data

Each dataset's row set is ``dino-mx demo --run RUNS/NAME -- DATA_OVERRIDES`` (printed before it
runs); a finished run is not trained again (the demo resumes it), so the script can be rerun to
re-print the table. ``--only NAME ...`` runs some of them. docs/transfer.md holds the results.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def datasets(shared: Path, subsets: Path) -> dict[str, list[str]]:
    """Name -> the Hydra data overrides of each dataset (the recipe is otherwise untouched)."""

    def npz(root: Path, file: str) -> list[str]:
        return ["data=npz", f"data.root={root.resolve()}", f"data.file={file}.npz"] + [
            f"data.name={file}"
        ]

    return {
        "pneumoniamnist": [],  # the bundled set the recipe was fixed on
        "pneumonia_546": npz(subsets, "pneumonia_546"),
        "bloodcells_1080": npz(subsets, "bloodcells_1080"),
        "bloodcells_wbc_28": npz(shared, "bloodcells_wbc_28"),
        "bloodcells_wbc_64": npz(shared, "bloodcells_wbc_64"),
    }


def table(results: dict[str, dict]) -> str:
    """One Markdown table: a block of four rows per dataset."""
    columns = ("knn_val", "knn_test", "linear_val", "linear_test")
    lines = [
        "| dataset | features | k-NN val | k-NN test | linear val | linear test |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, record in results.items():
        minutes = record["train_seconds"] / 60
        for i, (row, values) in enumerate(record["rows"].items()):
            label = f"{name} ({minutes:.1f} min)" if i == 0 else ""
            cells = " | ".join(f"{values[c]:.3f}" for c in columns)
            lines.append(f"| {label} | {row} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/transfer"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--subsets", type=Path, default=Path("data"))
    parser.add_argument("--only", nargs="*", default=None, help="dataset names to run")
    args = parser.parse_args()
    results = {}
    for name, overrides in datasets(args.shared, args.subsets).items():
        if args.only and name not in args.only:
            continue
        run = args.runs / name
        cmd = [sys.executable, "-m", "dino_mx", "demo", "--run", str(run), "--", *overrides]
        print("$ dino-mx", " ".join(cmd[3:]), flush=True)
        subprocess.run(cmd, check=True)
        results[name] = json.loads((run / "eval" / "demo.json").read_text())
    print(table(results))


if __name__ == "__main__":
    main()

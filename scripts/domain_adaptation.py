"""Domain adaptation, offline: pretrain on blood cells, export, adapt to chest X-rays.

    python scripts/domain_adaptation.py --data-root ../shared/data          # ~25 min, 2 CPU cores
    python scripts/domain_adaptation.py --data-root ../shared/data --pretrain-steps 20 \\
        --adapt-steps 10 --out runs/da_check                                  # mechanics only

1. ``+experiment=bloodcells_full``: DINO with every weight trained on the white-blood-cell crops.
2. ``dino-mx export``: its EMA teacher as a Hugging Face folder.
3. ``+experiment=pneumonia_lora`` and ``+experiment=pneumonia_freeze`` with
   ``model.pretrained=<export>``: adapt it to the bundled PneumoniaMNIST (LoRA; frozen
   embeddings and first blocks).
4. Weighted k-NN (k = 20) on the PneumoniaMNIST test split of the exported backbone before
   adaptation and of each adapted teacher. Prints a table and writes ``OUT/adaptation.json``.

Each command is printed as it runs, so the recipe can be replayed by hand.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from dino_mx.eval.cli import evaluate_knn
from dino_mx.eval.network import NetworkSpec

K = 20


def dino_mx(*args: str) -> None:
    """Run a ``dino-mx`` command as a user would, echoing it."""
    print("$ dino-mx", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "dino_mx.cli", *args], check=True)


def knn_test(**network: str) -> float:
    """k-NN accuracy on the PneumoniaMNIST test split, train split as memory bank."""
    spec = NetworkSpec(**network, data="pneumoniamnist")
    result = evaluate_knn(spec, split="test", ks=(K,))
    return result["metrics"][str(K)]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="folder with bloodcells_wbc_28.npz")
    parser.add_argument("--out", default="runs/domain_adaptation", help="parent of every run")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--adapt-steps", type=int, default=None, help="default: the config's")
    args = parser.parse_args()
    out = Path(args.out)
    source, exported = out / "bloodcells_full", out / "exported_bloodcells"

    def steps(n: int | None) -> list[str]:
        return [] if n is None else [f"trainer.max_steps={n}", f"trainer.save_every={n}"]

    common = ["trainer.resume=true", "trainer.progress=false"]
    dino_mx(
        "train",
        "+experiment=bloodcells_full",
        f"data.root={args.data_root}",
        f"paths.output_dir={source}",
        *common,
        *steps(args.pretrain_steps),
    )
    dino_mx("export", "--ckpt", str(source), "--out", str(exported))
    scores = {"exported (before adaptation)": knn_test(model=str(exported))}
    for adapter in ("lora", "freeze"):
        run = out / f"pneumonia_{adapter}"
        dino_mx(
            "train",
            f"+experiment=pneumonia_{adapter}",
            f"model.pretrained={exported}",
            f"paths.output_dir={run}",
            *common,
            *steps(args.adapt_steps),
        )
        scores[f"adapted with {adapter}"] = knn_test(ckpt=str(run))
    print(f"\n| backbone | k-NN (k={K}) PneumoniaMNIST test |\n|---|---:|")
    for name, accuracy in scores.items():
        print(f"| {name} | {accuracy:.3f} |")
    (out / "adaptation.json").write_text(json.dumps(scores, indent=2) + "\n")


if __name__ == "__main__":
    main()

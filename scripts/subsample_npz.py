"""Write a smaller copy of a MedMNIST-layout ``.npz``: a class-stratified random subset of train
and val (test kept whole, so the measurement keeps its power), labels in the input's dtype.

Used to see how a recipe fares on small data (docs/transfer.md): the MedMNIST sets that matter
here are a few hundred images (BreastMNIST 546 train / 78 val, RetinaMNIST 1,080 / 120).

    python scripts/subsample_npz.py ../shared/data/pneumoniamnist.npz data/pneumonia_546.npz \
        --train 546 --val 78
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted indices drawn without replacement, each class in its share of ``labels``.

    Args:
        labels: (N, 1) or (N,) integer class labels.
        n: Size of the subset (at most N).
    """
    y = labels.reshape(len(labels), -1)[:, 0]
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    quota[np.argsort(-(counts / counts.sum() * n - quota))[: n - quota.sum()]] += 1  # remainders
    picked = [rng.choice(np.flatnonzero(y == c), q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, required=True, help="train images kept")
    parser.add_argument("--val", type=int, required=True, help="val images kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with np.load(args.source) as f:
        arrays = dict(f)
    for split, n in (("train", args.train), ("val", args.val)):
        keep = stratified(arrays[f"{split}_labels"], n, rng)
        arrays[f"{split}_images"] = arrays[f"{split}_images"][keep]
        arrays[f"{split}_labels"] = arrays[f"{split}_labels"][keep]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    for split in ("train", "val", "test"):
        y = arrays[f"{split}_labels"].reshape(-1)
        print(f"{split}: {len(y)} images, per class {np.bincount(y).tolist()}")


if __name__ == "__main__":
    main()

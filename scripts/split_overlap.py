"""Check whether a dataset's val / test splits repeat the training split's source images.

    python scripts/split_overlap.py ../shared/data/bloodcells_wbc_64.npz

Augmented datasets (rotations, shifts and flips of a few hundred photographs) can put copies of
one photograph in two splits. Pixel distances miss such copies, but hue/saturation histograms
are nearly unchanged by geometry. For each of val and test the script prints the median cosine
similarity of every image's histogram to its nearest training histogram, beside the same figure
for training images among themselves, and the 20-NN accuracy of the histograms. A split whose
nearest-neighbour similarity equals train's own, with histogram k-NN near 1.0, shares source
images with train: its accuracies measure recognition of photographs, not generalisation.

Works on RGB files in MedMNIST's ``.npz`` layout; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dino_mx.eval.knn import knn_evaluate


def hue_saturation_histograms(images: np.ndarray, bins: int = 16) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, bins * bins) L2-normalised sqrt hue x saturation histograms.

    The square root (Hellinger) keeps a few large bins (the background) from dominating.
    """
    rgb = torch.from_numpy(images).float() / 255  # (N, H, W, 3)
    high, argmax = rgb.max(-1)
    low = rgb.min(-1).values
    delta = high - low
    r, g, b = rgb.unbind(-1)
    safe = delta.clamp_min(1e-8)
    hue = torch.stack([((g - b) / safe) % 6, (b - r) / safe + 2, (r - g) / safe + 4], -1)
    hue = hue.gather(-1, argmax.unsqueeze(-1)).squeeze(-1) / 6  # (N, H, W) in [0, 1)
    saturation = torch.where(high > 0, delta / high.clamp_min(1e-8), torch.zeros_like(high))
    h_bin = (hue * bins).long().clamp(0, bins - 1)
    s_bin = (saturation * bins).long().clamp(0, bins - 1)
    codes = (h_bin * bins + s_bin).flatten(1)  # (N, H*W)
    counts = torch.zeros(len(images), bins * bins).scatter_add_(
        1, codes, torch.ones_like(codes, dtype=torch.float32)
    )
    return torch.nn.functional.normalize(counts.sqrt(), dim=1)


def nearest_similarity(query: torch.Tensor, bank: torch.Tensor, exclude_self: bool) -> torch.Tensor:
    """(Q,) cosine similarity of each row of ``query`` to its nearest row of ``bank``."""
    best = []
    for start in range(0, len(query), 1024):
        sim = query[start : start + 1024] @ bank.T  # (chunk, N_bank)
        if exclude_self:
            rows = torch.arange(sim.shape[0])
            sim[rows, rows + start] = -1.0
        best.append(sim.max(1).values)
    return torch.cat(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("npz", help="dataset in MedMNIST's .npz layout (RGB)")
    parser.add_argument("--bins", type=int, default=16, help="hue and saturation bins each")
    parser.add_argument("--k", type=int, default=20, help="neighbours of the histogram k-NN")
    args = parser.parse_args()

    data = np.load(args.npz)
    if data["train_images"].ndim != 4 or data["train_images"].shape[-1] != 3:
        raise SystemExit(f"{args.npz}: needs RGB images (N, H, W, 3)")
    hists = {
        s: hue_saturation_histograms(data[f"{s}_images"], args.bins)
        for s in ("train", "val", "test")
    }
    labels = {s: torch.from_numpy(data[f"{s}_labels"].reshape(-1)) for s in hists}
    print(f"split  nearest-train similarity (median)  histogram {args.k}-NN accuracy")
    own = nearest_similarity(hists["train"], hists["train"], exclude_self=True)
    print(f"train  {own.median().item():<39.4f}-  (train against the other training images)")
    for split in ("val", "test"):
        sim = nearest_similarity(hists[split], hists["train"], exclude_self=False)
        knn = knn_evaluate(hists["train"], labels["train"], hists[split], labels[split], [args.k])
        accuracy = knn[args.k]["accuracy"]
        print(f"{split:5}  {sim.median().item():<39.4f}{accuracy:.3f}")


if __name__ == "__main__":
    main()

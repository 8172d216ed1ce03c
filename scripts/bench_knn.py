"""Benchmark the weighted k-NN evaluation at PneumoniaMNIST scale with ViT-S width features.

    python scripts/bench_knn.py                    # 5,000 train x 624 test x 384-dim, CPU
    python scripts/bench_knn.py --device cuda --n-train 100000

Times :func:`dino_mx.eval.knn_evaluate` (similarities, top-k, votes and metrics) with the
default ks on random features and prints the median of ``--repeats`` runs in seconds. A
benchmark, not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dino_mx.eval.knn import DEFAULT_KS, knn_evaluate


def bench(
    n_train: int = 5000,
    n_test: int = 624,
    dim: int = 384,
    num_classes: int = 2,
    repeats: int = 3,
    device: str = "cpu",
) -> list[float]:
    """Seconds per :func:`knn_evaluate` call on random (n_train, dim) / (n_test, dim) features,
    after one untimed warm-up call."""
    g = torch.Generator().manual_seed(0)
    train = torch.randn(n_train, dim, generator=g).to(device)
    test = torch.randn(n_test, dim, generator=g).to(device)
    train_y = torch.randint(0, num_classes, (n_train,), generator=g)
    test_y = torch.randint(0, num_classes, (n_test,), generator=g)
    knn_evaluate(train, train_y, test, test_y, DEFAULT_KS)  # warm-up (allocator, BLAS threads)
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        knn_evaluate(train, train_y, test, test_y, DEFAULT_KS)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=624)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    times = bench(args.n_train, args.n_test, args.dim, args.classes, args.repeats, args.device)
    print(
        f"knn_evaluate: {args.n_train} train x {args.n_test} test x {args.dim}-dim, "
        f"ks={list(DEFAULT_KS)}, {args.device}, {torch.get_num_threads()} threads: "
        f"median {statistics.median(times):.4f} s over {args.repeats} runs "
        f"({', '.join(f'{t:.4f}' for t in times)})"
    )


if __name__ == "__main__":
    main()

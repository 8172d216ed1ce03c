"""Benchmark the multi-crop data path: per-sample (torchvision, loader workers) vs batched (kornia).

    python scripts/bench_augment.py                        # 128 images of 64 px, 2 + 6 crops, CPU
    python scripts/bench_augment.py --device cuda --batch-size 256 --size 224 --global-size 224 \\
        --local-size 96 --n-local 8

Prints milliseconds per image for the ``augment.backend=per_sample`` transform
(:class:`~dino_mx.data.MultiCrop`, one image at a time as one loader worker runs it) and the
``batched`` one (:class:`~dino_mx.data.BatchMultiCrop`, one call per view for the whole batch),
with the ``medical`` preset's colour strengths and DINO's full set (hue jitter, solarisation).
Random uint8 images; one thread unless ``--threads``. A benchmark, not a test: the figures
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import time

import torch

from dino_mx.data import BatchMultiCrop, CropRecipe, MultiCrop

PRESETS = {
    "bloodcells_cpu": dict(
        saturation=0.2, hue=0.0, grayscale=0.2, solarize=0.0, blur=(0.5, 0.1, 0.2)
    ),
    "dino": dict(),  # CropRecipe's defaults: DINO's augmentations
}


def per_image_ms(fn, images: torch.Tensor, repeats: int, batched: bool) -> float:
    """Median over ``repeats`` of milliseconds per image, after one untimed call."""
    run = (lambda: fn(images)) if batched else (lambda: [fn(image) for image in images])
    run()
    times = []
    for _ in range(repeats):
        if images.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if images.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] / len(images) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--size", type=int, default=64, help="side of the input images")
    parser.add_argument("--global-size", type=int, default=64)
    parser.add_argument("--local-size", type=int, default=32)
    parser.add_argument("--n-local", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="device of the batched path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), generator=g)
    images = images.to(torch.uint8)
    common = dict(
        global_size=args.global_size,
        local_size=args.local_size,
        n_local=args.n_local,
        global_scale=(0.4, 1.0),
        local_scale=(0.1, 0.4),
        vflip=0.5,
    )
    print(f"{args.batch_size} images of {args.size} px, 2 + {args.n_local} crops, ms per image")
    print(f"{'preset':15} {'per_sample (cpu)':>17} {f'batched ({args.device})':>17}")
    for name, preset in PRESETS.items():
        per_sample = MultiCrop(3, [0.5], [0.25], CropRecipe(**common, **preset))
        batched = BatchMultiCrop(3, [0.5], [0.25], CropRecipe(**common, **preset)).to(args.device)
        a = per_image_ms(per_sample, images, args.repeats, batched=False)
        b = per_image_ms(batched, images.to(args.device), args.repeats, batched=True)
        print(f"{name:15} {a:17.2f} {b:17.2f}")


if __name__ == "__main__":
    main()

"""The ``dino-mx`` command.

dino-mx train [HYDRA OVERRIDES...]     train (see dino_mx/train.py)
dino-mx eval knn|linear --ckpt RUN     evaluate frozen features
dino-mx export --ckpt RUN --out DIR    the trained backbone as a Hugging Face folder
dino-mx visualize attention|pca --ckpt RUN   attention maps / patch PCA as PNG grids
dino-mx demo [--run RUN] [-- OVERRIDES]   the README's main job: train, compare, one table
dino-mx data download FLAG | info FILE | check PATH   fetch, describe, scan datasets

``python -m dino_mx ARGS`` is the same command.
"""

from __future__ import annotations

import sys

from dino_mx.errors import pop_debug

USAGE = """usage: dino-mx COMMAND [ARGS]

commands:
  train   train with Hydra overrides, e.g. `dino-mx train +experiment=smoke`
          (`dino-mx train --help` shows the config groups and their options)
  eval    evaluate frozen features: `dino-mx eval knn|linear|localize --ckpt RUN`
  export  write a run's backbone (LoRA merged) as a Hugging Face folder:
          `dino-mx export --ckpt RUN --out DIR [--which teacher|student]
          [--checkpoint best|latest]` (default: the run's best checkpoint, else its latest)
  visualize  attention maps or patch-feature PCA / k-means as PNGs in RUN/samples:
          `dino-mx visualize attention|pca --ckpt RUN [--data bccd_roi --split test --n 8]`
  demo    train DINO on the bundled PneumoniaMNIST on CPU, then print raw pixels vs random
          init vs DINO (k-NN and linear probe): `dino-mx demo [--run RUN] [-- OVERRIDES]`
  data    fetch an official MedMNIST file (md5-checked, resumable), describe .npz files, or
          list the unreadable files of a dataset:
          `dino-mx data download FLAG|--all [--size 28|64|128|224] [--root DIR]`,
          `dino-mx data info FILE...`, `dino-mx data check PATH...`

`python -m dino_mx COMMAND` is the same as `dino-mx COMMAND`. A user error is one line and exit
status 2; `dino-mx --debug COMMAND ...` (or HYDRA_FULL_ERROR=1) shows its traceback.
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a sub-command; returns the exit status."""
    args = pop_debug(list(sys.argv[1:] if argv is None else argv))  # --debug: tracebacks
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "train":
        from dino_mx import train

        return train.main(rest)
    if command == "eval":
        from dino_mx.eval.cli import main as eval_main

        return eval_main(rest)
    if command == "export":
        from dino_mx.export import main as export_main

        return export_main(rest)
    if command == "visualize":
        from dino_mx.eval.cli import visualize_main

        return visualize_main(rest)
    if command == "demo":
        from dino_mx.demo import main as demo_main

        return demo_main(rest)
    if command == "data":
        from dino_mx.data.cli import main as data_main

        return data_main(rest)
    choices = "train, eval, export, visualize, demo, data"
    print(f"dino-mx: unknown command '{command}'; valid choices: {choices}\n", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

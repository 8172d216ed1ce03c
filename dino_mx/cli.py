"""The ``dino-mx`` command.

dino-mx train [HYDRA OVERRIDES...]     train (see dino_mx/train.py)
dino-mx eval knn|linear --ckpt RUN     evaluate frozen features
dino-mx export --ckpt RUN --out DIR    the trained backbone as a Hugging Face folder
dino-mx visualize attention|pca --ckpt RUN   attention maps / patch PCA as PNG grids
"""

from __future__ import annotations

import sys

USAGE = """usage: dino-mx COMMAND [ARGS]

commands:
  train   train with Hydra overrides, e.g. `dino-mx train +experiment=smoke`
          (`dino-mx train --help` shows the config groups and their options)
  eval    evaluate frozen features: `dino-mx eval knn|linear|localize --ckpt RUN`
  export  write a run's backbone (LoRA merged) as a Hugging Face folder:
          `dino-mx export --ckpt RUN --out DIR [--which teacher|student]`
  visualize  attention maps or patch-feature PCA / k-means as PNGs in RUN/samples:
          `dino-mx visualize attention|pca --ckpt RUN [--data bccd_roi --split test --n 8]`
"""


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a sub-command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command == "train":
        from dino_mx import train

        sys.argv = ["dino-mx train", *rest]
        train.main()
        return 0
    if command == "eval":
        from dino_mx.eval.cli import main as eval_main

        return eval_main(rest)
    if command == "export":
        from dino_mx.export import main as export_main

        return export_main(rest)
    if command == "visualize":
        from dino_mx.eval.visualize import main as visualize_main

        return visualize_main(rest)
    choices = "train, eval, export, visualize"
    print(f"dino-mx: unknown command '{command}'; valid choices: {choices}\n", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

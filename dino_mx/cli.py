"""The ``dino-mx`` command.

dino-mx train [HYDRA OVERRIDES...]     train (see dino_mx/train.py)
dino-mx eval knn|linear --ckpt RUN     evaluate frozen features
"""

from __future__ import annotations

import sys

USAGE = """usage: dino-mx COMMAND [ARGS]

commands:
  train   train with Hydra overrides, e.g. `dino-mx train +experiment=smoke`
          (`dino-mx train --help` shows the config groups and their options)
  eval    evaluate frozen features: `dino-mx eval knn|linear --ckpt RUN`
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
    print(f"dino-mx: unknown command '{command}'; valid choices: train, eval\n", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

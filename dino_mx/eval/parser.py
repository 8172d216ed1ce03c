"""The ``dino-mx eval`` argument parser: one front door, a sub-command per evaluation."""

from __future__ import annotations

import argparse
import textwrap

from dino_mx.eval.knn import DEFAULT_KS
from dino_mx.eval.linear import DEFAULT_CS, SELECT
from dino_mx.eval.localize import add_localize_parser

DESCRIPTION = """Evaluate frozen features of a DINO run, an untrained or pretrained model, or raw
pixels: weighted k-NN and a linear probe on any MedMNIST-layout data, scored with accuracy and
AUC for binary, multi-class, ordinal and multi-label (ChestMNIST) tasks as MedMNIST reports them,
and the attention localisation score on data with boxes. Results are printed, written to --json
and, for a run, to RUN/eval/ (knn.json for the run's own data, teacher and test split;
knn@DATA.json, knn_student.json, knn_val.json otherwise).

examples:
  dino-mx eval knn --ckpt runs/pn
  dino-mx eval linear --ckpt runs/pn --which student
  dino-mx eval knn --ckpt runs/pn --data bloodcells --data-root ../shared/data
  dino-mx eval knn --baseline pixels --data medmnist --override data.flag=chestmnist \\
      --data-root /data/medmnist
  dino-mx eval localize --ckpt runs/lg --data bccd_roi --data-root ../shared/data"""

KNN = """Weighted k-NN of DINO: each of the k most cosine-similar training features votes for its
class with weight exp(sim / T); the AUC is computed from the normalised votes. For multi-label
data the vote runs per label (score = weighted fraction of neighbours with the label, predicted
above 0.5)."""

LINEAR = """Logistic-regression probe on standardised features: one multinomial regression, or
one per label for multi-label data, fitted on train for each C; the C with the best val score is
reported on val and test."""


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own and keeps indented lines (examples)
    as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.split("\n\n"):
            lines = block.splitlines()
            if len(lines) > 1 and lines[1].startswith("  "):  # a heading and indented lines
                blocks.append(textwrap.indent(block, indent))
            else:
                fill = textwrap.fill(" ".join(block.split()), width)
                blocks.append(textwrap.indent(fill, indent))
        return "\n\n".join(blocks)


def common_options() -> argparse.ArgumentParser:
    """The options every ``dino-mx eval`` sub-command shares (network, data, output)."""
    common = argparse.ArgumentParser(add_help=False)
    src = common.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="run directory (latest checkpoint) or checkpoint folder")
    src.add_argument(
        "--model",
        help="untrained baseline: preset (configs/model, random init with seed 0), hub name or "
        "local Hugging Face folder",
    )
    src.add_argument("--baseline", choices=["pixels"], help="raw-pixel baseline")
    common.add_argument(
        "--which",
        choices=["teacher", "student"],
        default="teacher",
        help="checkpoint network (default: %(default)s, the EMA network DINO evaluates)",
    )
    common.add_argument(
        "--data",
        help="data config group (e.g. bloodcells, medmnist); default: the checkpoint's data, "
        "pneumoniamnist for --model/--baseline",
    )
    common.add_argument("--data-root", help="folder holding the data files (data.root)")
    common.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, repeatable, e.g. data.size=64 or data.flag=chestmnist",
    )
    common.add_argument(
        "--tokens",
        choices=["cls", "cls+mean"],
        help="feature: CLS, or CLS + mean patch token (default: cls for knn, cls+mean for "
        "linear, as DINO)",
    )
    common.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="split reported (default: %(default)s); train is the memory bank / probe training set",
    )
    common.add_argument(
        "--batch-size", type=int, default=256, help="images per forward pass (default: 256)"
    )
    common.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    common.add_argument(
        "--cache-dir",
        help="feature cache folder (default for a run: RUN/eval/features; none for "
        "--model/--baseline)",
    )
    common.add_argument("--json", dest="json_path", metavar="PATH", help="also write JSON here")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``dino-mx eval`` argument parser, with sub-commands knn, linear and localize."""
    parser = argparse.ArgumentParser(
        prog="dino-mx eval", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{knn,linear,localize}")
    common = common_options()
    knn = sub.add_parser("knn", parents=[common], help="weighted k-NN (DINO)", description=KNN)
    knn.add_argument(
        "--k",
        nargs="+",
        type=int,
        default=list(DEFAULT_KS),
        dest="ks",
        metavar="K",
        help=f"numbers of neighbours, one result each (default: {' '.join(map(str, DEFAULT_KS))})",
    )
    knn.add_argument(
        "--temperature", type=float, default=0.07, help="vote temperature T (default: DINO's 0.07)"
    )
    linear = sub.add_parser(
        "linear", parents=[common], help="logistic-regression probe", description=LINEAR
    )
    linear.add_argument(
        "--cs",
        nargs="+",
        type=float,
        default=list(DEFAULT_CS),
        help="inverse regularisation strengths C tried (default: "
        f"{' '.join(f'{c:g}' for c in DEFAULT_CS)})",
    )
    linear.add_argument(
        "--select",
        choices=SELECT,
        help="val metric that chooses C (default: auc for multi-label data, where accuracy at "
        "0.5 rewards predicting no finding, accuracy otherwise)",
    )
    add_localize_parser(sub, common)
    return parser

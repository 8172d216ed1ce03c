"""The argument parsers of ``dino-mx eval`` (a sub-command per evaluation) and ``dino-mx
visualize``: the options naming the network and the data are defined once
(:func:`add_network_options`) and read back as one :class:`NetworkSpec` (:func:`network_spec`);
each command adds only its own options."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from typing import Any

from dino_mx.checkpoint import PREFER
from dino_mx.eval.knn import DEFAULT_KS
from dino_mx.eval.linear import DEFAULT_CS, SELECT
from dino_mx.eval.network import BASELINES, NetworkSpec
from dino_mx.eval.visualize import KINDS

DESCRIPTION = """Evaluate frozen features of a DINO run, an untrained or pretrained model, or raw
pixels: weighted k-NN and a linear probe on any MedMNIST-layout data, scored with accuracy and
AUC for binary, multi-class, ordinal and multi-label (ChestMNIST) tasks as MedMNIST reports them,
and the attention localisation score on data with boxes. Results are printed, written to --json
and, for a run, to RUN/eval/ (knn.json for the run's own data, teacher and test split;
knn@DATA.json, knn_student.json, knn_val.json otherwise).

examples:
  dino-mx eval knn --ckpt runs/pn
  dino-mx eval knn --ckpt runs/pn --checkpoint latest
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

VISUALIZE = """PNG grids of what a ViT attends to and how its patch features group, on --n
images spread evenly over a split. attention writes attention_{split}.png: per image (rows) the
image with its boxes, the head-mean CLS attention, DINO's top --keep mass mask and every head.
pca writes pca_{split}.png: the image, the foreground PCA in RGB and the k-means segments. Files
go to RUN/samples/ for a checkpoint, else to --out.

examples:
  dino-mx visualize attention --ckpt runs/lg --data bccd_roi --data-root ../shared/data --n 8
  dino-mx visualize pca --ckpt runs/lg --n 8 --k 4
  dino-mx visualize attention --model dinov2_small --data bloodcells --out figures/"""

DEVICE_HELP = "cuda, cpu, ... (default: cuda when available)"


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


def add_network_options(parser: argparse.ArgumentParser, *, baselines: bool = True) -> None:
    """Add the options that name the network and the data (:class:`NetworkSpec`): defined once
    here, so every command spells and explains them alike; :func:`network_spec` reads them back.

    Args:
        parser: The command's parser (or a parent parser).
        baselines: Offer ``--baseline`` (not for commands that need a ViT's attention).
    """
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--ckpt", help="run directory (its checkpoint chosen by --checkpoint) or checkpoint folder"
    )
    src.add_argument(
        "--model",
        help="untrained baseline: preset (configs/model, random init with seed 0), hub name or "
        "local Hugging Face folder",
    )
    if baselines:
        src.add_argument("--baseline", choices=list(BASELINES), help="raw-pixel baseline")
    else:
        parser.set_defaults(baseline=None)
    parser.add_argument(
        "--which",
        choices=["teacher", "student"],
        default="teacher",
        help="checkpoint network (default: %(default)s, the EMA network DINO evaluates)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=list(PREFER),
        default="best",
        help="which checkpoint of a run directory: best (default; the one its periodic k-NN "
        "scored highest, trainer.best_metric, else the latest) or latest (the last one saved)",
    )
    untrained = "--model/--baseline" if baselines else "--model"
    parser.add_argument(
        "--data",
        help="data config group (e.g. bloodcells, medmnist); default: the checkpoint's data, "
        f"pneumoniamnist for {untrained}",
    )
    parser.add_argument("--data-root", help="folder holding the data files (data.root)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="config override, repeatable, e.g. data.size=64 or data.flag=chestmnist",
    )


def network_spec(args: argparse.Namespace) -> NetworkSpec:
    """The :class:`NetworkSpec` of options added by :func:`add_network_options`, whose dests are
    the spec's field names."""
    return NetworkSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(NetworkSpec)})


def common_options() -> argparse.ArgumentParser:
    """The options every ``dino-mx eval`` sub-command shares (network, data, output)."""
    common = argparse.ArgumentParser(add_help=False)
    add_network_options(common)
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
    common.add_argument("--device", help=DEVICE_HELP)
    common.add_argument(
        "--cache-dir",
        help="feature cache folder (default for a run: RUN/eval/features; none for "
        "--model/--baseline)",
    )
    common.add_argument("--json", dest="json_path", metavar="PATH", help="also write JSON here")
    return common


def add_knn_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``dino-mx eval knn``: the shared options, the neighbour counts and the temperature."""
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


def add_linear_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``dino-mx eval linear``: the shared options, the C sweep and the metric choosing C."""
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


def add_localize_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``dino-mx eval localize``: the shared options, the box class, the mass kept, the size."""
    parser = sub.add_parser(
        "localize",
        parents=[common],
        help="attention precision / recall / pointing on boxes",
        description="Score how well the head-mean CLS attention of a ViT covers the boxes of a "
        "dataset with regions of interest (bccd_roi, coco): precision, recall and pointing "
        "per image, averaged. Writes RUN/eval/localize.json for a run.",
    )
    parser.add_argument("--roi-class", help="box class scored (name or id); default all")
    parser.add_argument("--keep", type=float, default=0.6, help="attention mass kept (DINO)")
    parser.add_argument("--image-size", type=int, help="input side (default: global crop)")


def build_parser() -> argparse.ArgumentParser:
    """The ``dino-mx eval`` argument parser, with sub-commands knn, linear and localize."""
    parser = argparse.ArgumentParser(
        prog="dino-mx eval", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{knn,linear,localize}")
    common = common_options()
    for add in (add_knn_parser, add_linear_parser, add_localize_parser):
        add(sub, common)
    return parser


def build_visualize_parser() -> argparse.ArgumentParser:
    """The ``dino-mx visualize`` argument parser: a kind, the network options, the figure's."""
    parser = argparse.ArgumentParser(
        prog="dino-mx visualize", description=VISUALIZE, formatter_class=HelpFormatter
    )
    parser.add_argument("kind", choices=KINDS, help="attention maps or patch PCA / k-means")
    add_network_options(parser, baselines=False)  # attention needs a ViT
    parser.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="test",
        help="split the images come from (default: %(default)s)",
    )
    parser.add_argument("--n", type=int, default=8, help="images, evenly spaced in the split")
    parser.add_argument("--image-size", type=int, help="input side (default: global crop size)")
    parser.add_argument("--keep", type=float, default=0.6, help="attention mass in the mask")
    parser.add_argument("--k", type=int, default=4, help="k-means segments (pca)")
    parser.add_argument(
        "--bg-threshold",
        type=float,
        default=0.5,
        help="PCA background threshold on the first component in [0, 1]; negative: none",
    )
    parser.add_argument("--roi-class", help="draw only this class's boxes (name or id)")
    parser.add_argument("--out", help="output folder (default RUN/samples)")
    parser.add_argument("--device", help=DEVICE_HELP)
    return parser

"""``dino-mx eval`` and ``dino-mx visualize``: k-NN and linear-probe evaluation of frozen
features, the attention localisation score (:mod:`dino_mx.eval.localize`) and the attention /
patch-PCA figures (:mod:`dino_mx.eval.visualize`). Every command takes the network and the data as
one :class:`~dino_mx.eval.network.NetworkSpec`, built from the same options
(:mod:`dino_mx.eval.parser`).

Launch it as

    dino-mx eval knn --ckpt runs/pn                       # the run's best teacher, its data
    dino-mx eval knn --ckpt runs/pn --checkpoint latest   # its last checkpoint instead
    dino-mx eval linear --ckpt runs/pn/checkpoints/step_0000300 --which student
    dino-mx eval knn --ckpt runs/pn --data bloodcells --data-root ../shared/data
    dino-mx eval knn --model vit_tiny                     # random-init baseline (seed 0)
    dino-mx eval linear --baseline pixels --data pneumoniamnist --json pixels.json
    dino-mx eval knn --baseline pixels --data medmnist --override data.flag=chestmnist \\
        --data-root /data/medmnist                        # multi-label: per-label votes
    dino-mx eval localize --ckpt runs/lg --data bccd_roi --data-root ../shared/data --roi-class WBC

or from Python with :func:`evaluate_knn` / :func:`evaluate_linear` (e.g.
``evaluate_knn(NetworkSpec(ckpt="runs/pn"), ks=(20,))``), which return the result
dict the command prints and writes (to ``--json`` and, for a run, ``RUN/eval/``: ``knn.json``
for the run's own data, teacher and test split, ``knn@bloodcells.json``, ``knn_val.json``, ...
otherwise, see :mod:`dino_mx.eval.results`). Every task type of MedMNIST is scored with its
accuracy and AUC (:mod:`dino_mx.eval.metrics`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from torch import Tensor

from dino_mx.errors import log_to_stderr, reports_errors
from dino_mx.eval.knn import DEFAULT_KS, knn_evaluate
from dino_mx.eval.linear import DEFAULT_CS, linear_probe
from dino_mx.eval.localize import evaluate_localize, format_localize
from dino_mx.eval.network import Network, NetworkSpec, load_network, network_features
from dino_mx.eval.parser import build_parser, build_visualize_parser, network_spec
from dino_mx.eval.results import format_result, write_result
from dino_mx.eval.visualize import visualize

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's from Python 3.11

log = logging.getLogger(__name__)


def _record(kind: str, net: Network, tokens: str, split: str, feats: dict) -> dict[str, Any]:
    """The fields every result dict starts with: what was evaluated, on what."""
    data, (train_x, _) = net.cfg.data, feats["train"]
    return {
        "eval": kind,
        **net.describe(),
        "tokens": tokens,
        "data": {"name": data.name, "size": data.size, "image_size": net.image_size},
        "task": net.task,
        "split": split,
        "n_train": int(train_x.shape[0]),
        "n_eval": int(feats[split][0].shape[0]),
        "feature_dim": int(train_x.shape[1]),
    }


class EvalOptions(TypedDict, total=False):
    """The keywords every evaluation of frozen features takes besides its own, typed once:
    how the features are computed (``batch_size``, default 256; ``device``, default cuda when
    available; ``cache_dir``, default ``RUN/eval/features`` for a run, else no cache) and where
    the result also goes (``json_path``; a run always gets ``RUN/eval/``)."""

    batch_size: int
    device: str | None
    cache_dir: str | Path | None
    json_path: str | Path | None


Scorer = Callable[[Network, dict[str, tuple[Tensor, Tensor]]], dict[str, Any]]


def _evaluate_frozen(
    kind: str,
    spec: NetworkSpec,
    tokens: str,
    splits: Sequence[str],
    split: str,
    score: Scorer,
    *,
    batch_size: int = 256,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """The path every evaluation of frozen features takes: load the network, compute (or read
    from the cache) the features of ``splits``, add what ``score`` finds in them to the run
    description, write the result and return it."""
    net = load_network(spec)
    tokens = net.tokens_for(tokens)
    feats = network_features(net, splits, tokens, batch_size, device, cache_dir)
    result = _record(kind, net, tokens, split, feats) | score(net, feats)
    write_result(result, net.run_dir, json_path, net.trained_on)
    return result


def evaluate_knn(
    spec: NetworkSpec,
    *,
    tokens: str = "cls",
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 0.07,
    split: str = "test",
    **options: Unpack[EvalOptions],
) -> dict[str, Any]:
    """Weighted k-NN (DINO) of ``split`` against the train split as memory bank.

    ``spec`` names the network and the data (default: the checkpoint's data, else
    pneumoniamnist); ``options`` are :class:`EvalOptions` (features cached in ``cache_dir``).
    Multi-label data gets DINO's vote per label.

    Returns:
        The run description (``network``, ``step``, ``tokens``, ``data``, ``task``, ``split``,
        sizes) with ``metrics``: ``{str(k): {accuracy, auc, ...}}``, as
        :func:`~dino_mx.eval.metrics.task_metrics`.
    """

    def score(net: Network, feats: dict[str, tuple[Tensor, Tensor]]) -> dict[str, Any]:
        (train_x, train_y), (test_x, test_y) = feats["train"], feats[split]
        metrics = knn_evaluate(train_x, train_y, test_x, test_y, ks, temperature, task=net.task)
        return {"temperature": temperature, "metrics": {str(k): m for k, m in metrics.items()}}

    return _evaluate_frozen("knn", spec, tokens, ("train", split), split, score, **options)


def evaluate_linear(
    spec: NetworkSpec,
    *,
    tokens: str = "cls+mean",
    cs: Sequence[float] = DEFAULT_CS,
    select: str | None = None,
    split: str = "test",
    **options: Unpack[EvalOptions],
) -> dict[str, Any]:
    """Logistic-regression probe on train features, C chosen on val, reported on val and test.

    Arguments as :func:`evaluate_knn`; ``cs`` are the inverse regularisation strengths tried,
    ``select`` the val metric choosing C (``accuracy``, or ``auc``; default ``auc`` for
    multi-label data, else ``accuracy``). Multi-label data gets one regression per label.

    Returns:
        The run description with ``select``, ``best_c``, ``sweep`` (``{c, val_accuracy,
        val_auc}`` per C), ``val`` and ``test`` metrics, and ``metrics`` = those of ``split``.
    """

    def score(net: Network, feats: dict[str, tuple[Tensor, Tensor]]) -> dict[str, Any]:
        probe = linear_probe(
            *feats["train"], *feats["val"], *feats["test"], cs=cs, task=net.task, select=select
        )
        return {**probe, "metrics": probe[split]}  # type: ignore[literal-required]

    splits = ("train", "val", "test")
    return _evaluate_frozen("linear", spec, tokens, splits, split, score, **options)


# Per sub-command: the evaluation, its report, and the options it takes besides the network;
# each option's dest is the evaluation's argument of that name.
Evaluation = tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], str], tuple[str, ...]]
EVAL_COMMANDS: dict[str, Evaluation] = {
    "knn": (evaluate_knn, format_result, ("tokens", "ks", "temperature", "cache_dir")),
    "linear": (evaluate_linear, format_result, ("tokens", "cs", "select", "cache_dir")),
    "localize": (evaluate_localize, format_localize, ("roi_class", "keep", "image_size")),
}
RUN_OPTIONS = ("split", "batch_size", "device", "json_path")


def _evaluate(args: argparse.Namespace) -> str:
    """Run the evaluation ``args.command`` names; an option left unset (None) takes the
    evaluation's own default (``--tokens``: cls for knn, cls+mean for linear)."""
    evaluate, report, names = EVAL_COMMANDS[args.command]
    options = {n: v for n in (*RUN_OPTIONS, *names) if (v := getattr(args, n)) is not None}
    return report(evaluate(network_spec(args), **options))


def _visualize(args: argparse.Namespace) -> str:
    path = visualize(
        args.kind,
        network_spec(args),
        split=args.split,
        n=args.n,
        image_size=args.image_size,
        keep=args.keep,
        k=args.k,
        bg_threshold=None if args.bg_threshold < 0 else args.bg_threshold,
        roi_class=args.roi_class,
        out_dir=args.out,
        device=args.device,
    )
    return str(path)


def _run(
    parser: argparse.ArgumentParser,
    argv: list[str],
    command: Callable[[argparse.Namespace], str],
) -> int:
    """Parse ``argv``, run ``command`` and print its report: the one path of every eval command.

    argparse exits on ``--help`` and on bad usage (having printed why); that exit becomes the
    returned status, so ``main`` returns like every other ``dino-mx`` command.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    log_to_stderr()
    print(command(args))
    return 0


@reports_errors("dino-mx eval")
def main(argv: list[str]) -> int:
    """Run ``dino-mx eval``; returns the exit status (2: bad usage or input, one line)."""
    return _run(build_parser(), argv, _evaluate)


@reports_errors("dino-mx visualize")
def visualize_main(argv: list[str]) -> int:
    """Run ``dino-mx visualize``; returns the exit status (2: bad usage or input, one line)."""
    return _run(build_visualize_parser(), argv, _visualize)

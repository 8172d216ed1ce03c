"""``dino-mx eval``: k-NN and linear-probe evaluation of frozen features, and the attention
localisation score (:mod:`dino_mx.eval.localize`).

Launch it as

    dino-mx eval knn --ckpt runs/pn                       # the run's latest teacher, its data
    dino-mx eval linear --ckpt runs/pn/checkpoints/step_0000300 --which student
    dino-mx eval knn --ckpt runs/pn --data bloodcells --data-root ../shared/data
    dino-mx eval knn --model vit_tiny                     # random-init baseline (seed 0)
    dino-mx eval linear --baseline pixels --data pneumoniamnist --json pixels.json
    dino-mx eval localize --ckpt runs/lg --data bccd_roi --data-root ../shared/data --roi-class WBC

or from Python with :func:`evaluate_knn` / :func:`evaluate_linear`, which return the result
dict the command prints and writes (to ``--json`` and, for a run, ``RUN/eval/{knn,linear}.json``).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from dino_mx.eval.knn import DEFAULT_KS, knn_evaluate
from dino_mx.eval.linear import DEFAULT_CS, linear_probe
from dino_mx.eval.localize import add_localize_parser, run_localize
from dino_mx.eval.network import Network, load_network, network_features
from dino_mx.eval.results import write_result

log = logging.getLogger(__name__)
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")


def _record(kind: str, net: Network, tokens: str, split: str, feats: dict) -> dict[str, Any]:
    """The fields every result dict starts with: what was evaluated, on what."""
    data, (train_x, _) = net.cfg.data, feats["train"]
    return {
        "eval": kind,
        "network": net.label,
        "which": net.which,
        "checkpoint": str(net.ckpt) if net.ckpt else None,
        "step": net.step,
        "model": net.cfg.model.name if net.label != "pixels" else None,
        "tokens": tokens,
        "data": {"name": data.name, "size": data.size, "image_size": net.image_size},
        "split": split,
        "n_train": int(train_x.shape[0]),
        "n_eval": int(feats[split][0].shape[0]),
        "feature_dim": int(train_x.shape[1]),
    }


def evaluate_knn(
    ckpt: str | Path | None = None,
    *,
    model: str | None = None,
    baseline: str | None = None,
    which: str = "teacher",
    data: str | None = None,
    data_root: str | None = None,
    overrides: Sequence[str] = (),
    tokens: str = "cls",
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 0.07,
    split: str = "test",
    batch_size: int = 256,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """Weighted k-NN (DINO) of ``split`` against the train split as memory bank.

    Exactly one of ``ckpt`` (run dir or checkpoint folder), ``model`` (preset name, hub name or
    local HF folder) and ``baseline`` (``pixels``) names the network. ``data`` is a config group
    name (default: the checkpoint's data, else pneumoniamnist); ``overrides`` are ``KEY=VALUE``
    for the data/augment config. Features are cached in ``cache_dir`` (default for a run:
    ``RUN/eval/features``).

    Returns:
        The run description (``network``, ``step``, ``tokens``, ``data``, ``split``, sizes) with
        ``metrics``: ``{str(k): {accuracy, balanced_accuracy, macro_f1[, auc]}}``.

    Raises:
        NotImplementedError: The data is multi-label.
    """
    net = load_network(ckpt, model, baseline, which, data, data_root, overrides)
    tokens = net.tokens_for(tokens)
    feats = network_features(net, ("train", split), tokens, batch_size, device, cache_dir)
    (train_x, train_y), (test_x, test_y) = feats["train"], feats[split]
    metrics = knn_evaluate(train_x, train_y, test_x, test_y, ks, temperature)
    result = _record("knn", net, tokens, split, feats)
    result |= {"temperature": temperature, "metrics": {str(k): m for k, m in metrics.items()}}
    write_result(result, net.run_dir, json_path)
    return result


def evaluate_linear(
    ckpt: str | Path | None = None,
    *,
    model: str | None = None,
    baseline: str | None = None,
    which: str = "teacher",
    data: str | None = None,
    data_root: str | None = None,
    overrides: Sequence[str] = (),
    tokens: str = "cls+mean",
    cs: Sequence[float] = DEFAULT_CS,
    split: str = "test",
    batch_size: int = 256,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """Logistic-regression probe on train features, C chosen on val, reported on val and test.

    Arguments as :func:`evaluate_knn`; ``cs`` are the inverse regularisation strengths tried.

    Returns:
        The run description with ``best_c``, ``sweep`` (``{c, val_accuracy}`` per C), ``val``
        and ``test`` metrics, and ``metrics`` = those of ``split``.

    Raises:
        NotImplementedError: The data is multi-label.
    """
    net = load_network(ckpt, model, baseline, which, data, data_root, overrides)
    tokens = net.tokens_for(tokens)
    feats = network_features(net, ("train", "val", "test"), tokens, batch_size, device, cache_dir)
    probe = linear_probe(*feats["train"], *feats["val"], *feats["test"], cs=cs)
    result = _record("linear", net, tokens, split, feats)
    result |= {**probe, "metrics": probe[split]}  # type: ignore[literal-required]
    write_result(result, net.run_dir, json_path)
    return result


def _cell(value: float, width: int) -> str:
    return f"  {'-':>{width}}" if math.isnan(value) else f"  {value:>{width}.4f}"


def _table(rows: list[tuple[str, dict[str, float]]], first: str) -> str:
    """Rows of metrics under column headers; a missing or NaN value prints as ``-``."""
    columns = [m for m in METRICS if any(m in r for _, r in rows)]
    width = max(len(first), *(len(name) for name, _ in rows))
    lines = [f"{first:<{width}}" + "".join(f"  {c:>8}" for c in columns)]
    for name, r in rows:
        cells = (_cell(r.get(c, math.nan), max(len(c), 8)) for c in columns)
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def format_result(result: dict[str, Any]) -> str:
    """A human-readable report of an :func:`evaluate_knn` / :func:`evaluate_linear` result."""
    step = f", step {result['step']}" if result["step"] is not None else ""
    d = result["data"]
    head = (
        f"{result['eval']} | {result['network']}{step} | tokens {result['tokens']} | "
        f"{d['name']} ({d['size']} px data, {d['image_size']} px input) | "
        f"{result['n_train']} train / {result['n_eval']} {result['split']}, "
        f"dim {result['feature_dim']}"
    )
    if result["eval"] == "knn":
        rows = [(f"k={k}", m) for k, m in result["metrics"].items()]
        return f"{head}, T={result['temperature']}\n{_table(rows, 'k')}"
    sweep = "  ".join(f"C={p['c']:g}: {p['val_accuracy']:.4f}" for p in result["sweep"])
    rows = [(s, result[s]) for s in ("val", "test")]
    return (
        f"{head}\nval accuracy per C: {sweep}\nbest C = {result['best_c']:g}\n"
        f"{_table(rows, 'split')}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``dino-mx eval`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    src = common.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="run directory (latest checkpoint) or checkpoint folder")
    src.add_argument(
        "--model",
        help="untrained baseline: preset (configs/model, random init "
        "with seed 0), hub name or local Hugging Face folder",
    )
    src.add_argument("--baseline", choices=["pixels"], help="raw-pixel baseline")
    common.add_argument(
        "--which",
        choices=["teacher", "student"],
        default="teacher",
        help="checkpoint network; DINO evaluates the EMA teacher",
    )
    common.add_argument(
        "--data",
        help="data config group (e.g. bloodcells); default: the "
        "checkpoint's data, pneumoniamnist for --model/--baseline",
    )
    common.add_argument("--data-root", help="folder holding the data files (data.root)")
    common.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, repeatable, e.g. data.size=64",
    )
    common.add_argument(
        "--tokens",
        choices=["cls", "cls+mean"],
        help="feature: CLS, or CLS + mean patch token (default: cls for knn, "
        "cls+mean for linear, as DINO)",
    )
    common.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="split reported; train is the memory bank / probe training set",
    )
    common.add_argument("--batch-size", type=int, default=256)
    common.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    common.add_argument(
        "--cache-dir",
        help="feature cache folder (default for a run: "
        "RUN/eval/features; none for --model/--baseline)",
    )
    common.add_argument("--json", dest="json_path", metavar="PATH", help="also write JSON here")
    parser = argparse.ArgumentParser(prog="dino-mx eval", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    knn = sub.add_parser("knn", parents=[common], help="weighted k-NN (DINO)")
    knn.add_argument("--k", nargs="+", type=int, default=list(DEFAULT_KS), dest="ks")
    knn.add_argument(
        "--temperature", type=float, default=0.07, help="vote temperature T (DINO: 0.07)"
    )
    linear = sub.add_parser("linear", parents=[common], help="logistic-regression probe")
    linear.add_argument(
        "--cs",
        nargs="+",
        type=float,
        default=list(DEFAULT_CS),
        help="inverse regularisation strengths, chosen on val accuracy",
    )
    add_localize_parser(sub, common)
    return parser


def main(argv: list[str]) -> int:
    """Run ``dino-mx eval``; returns the exit status (2: bad usage or multi-label data)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on errors
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kwargs = dict(
        model=args.model,
        baseline=args.baseline,
        which=args.which,
        data=args.data,
        data_root=args.data_root,
        overrides=args.override,
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
        cache_dir=args.cache_dir,
        json_path=args.json_path,
    )
    try:
        if args.command == "localize":
            return run_localize(args)
        if args.command == "knn":
            result = evaluate_knn(
                args.ckpt,
                tokens=args.tokens or "cls",
                ks=args.ks,
                temperature=args.temperature,
                **kwargs,
            )
        else:
            result = evaluate_linear(
                args.ckpt, tokens=args.tokens or "cls+mean", cs=args.cs, **kwargs
            )
    except NotImplementedError as error:
        print(f"dino-mx eval: not supported: {error}", file=sys.stderr)
        return 2
    except (OSError, KeyError, ValueError, HydraException, OmegaConfBaseException) as error:
        print(f"dino-mx eval: error: {error}", file=sys.stderr)
        return 1
    print(format_result(result))
    return 0

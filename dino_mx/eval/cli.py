"""``dino-mx eval``: k-NN and linear-probe evaluation of frozen features, and the attention
localisation score (:mod:`dino_mx.eval.localize`).

Launch it as

    dino-mx eval knn --ckpt runs/pn                       # the run's latest teacher, its data
    dino-mx eval linear --ckpt runs/pn/checkpoints/step_0000300 --which student
    dino-mx eval knn --ckpt runs/pn --data bloodcells --data-root ../shared/data
    dino-mx eval knn --model vit_tiny                     # random-init baseline (seed 0)
    dino-mx eval linear --baseline pixels --data pneumoniamnist --json pixels.json
    dino-mx eval knn --baseline pixels --data medmnist --override data.flag=chestmnist \\
        --data-root /data/medmnist                        # multi-label: per-label votes
    dino-mx eval localize --ckpt runs/lg --data bccd_roi --data-root ../shared/data --roi-class WBC

or from Python with :func:`evaluate_knn` / :func:`evaluate_linear`, which return the result
dict the command prints and writes (to ``--json`` and, for a run, ``RUN/eval/``: ``knn.json``
for the run's own data, teacher and test split, ``knn@bloodcells.json``, ``knn_val.json``, ...
otherwise, see :mod:`dino_mx.eval.results`). Every task type of MedMNIST is scored with its
accuracy and AUC (:mod:`dino_mx.eval.metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dino_mx.errors import reports_errors
from dino_mx.eval.knn import DEFAULT_KS, knn_evaluate
from dino_mx.eval.linear import DEFAULT_CS, linear_probe
from dino_mx.eval.localize import run_localize
from dino_mx.eval.network import Network, load_network, network_features
from dino_mx.eval.parser import build_parser
from dino_mx.eval.results import format_result, write_result

log = logging.getLogger(__name__)


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
        "task": net.task,
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
    ``RUN/eval/features``). Multi-label data gets DINO's vote per label.

    Returns:
        The run description (``network``, ``step``, ``tokens``, ``data``, ``task``, ``split``,
        sizes) with ``metrics``: ``{str(k): {accuracy, auc, ...}}``, as
        :func:`~dino_mx.eval.metrics.task_metrics`.
    """
    net = load_network(ckpt, model, baseline, which, data, data_root, overrides)
    tokens = net.tokens_for(tokens)
    feats = network_features(net, ("train", split), tokens, batch_size, device, cache_dir)
    (train_x, train_y), (test_x, test_y) = feats["train"], feats[split]
    metrics = knn_evaluate(train_x, train_y, test_x, test_y, ks, temperature, task=net.task)
    result = _record("knn", net, tokens, split, feats)
    result |= {"temperature": temperature, "metrics": {str(k): m for k, m in metrics.items()}}
    write_result(result, net.run_dir, json_path, net.trained_on)
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
    select: str | None = None,
    split: str = "test",
    batch_size: int = 256,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """Logistic-regression probe on train features, C chosen on val, reported on val and test.

    Arguments as :func:`evaluate_knn`; ``cs`` are the inverse regularisation strengths tried,
    ``select`` the val metric choosing C (``accuracy``, or ``auc``; default ``auc`` for
    multi-label data, else ``accuracy``). Multi-label data gets one regression per label.

    Returns:
        The run description with ``select``, ``best_c``, ``sweep`` (``{c, val_accuracy,
        val_auc}`` per C), ``val`` and ``test`` metrics, and ``metrics`` = those of ``split``.
    """
    net = load_network(ckpt, model, baseline, which, data, data_root, overrides)
    tokens = net.tokens_for(tokens)
    feats = network_features(net, ("train", "val", "test"), tokens, batch_size, device, cache_dir)
    probe = linear_probe(
        *feats["train"], *feats["val"], *feats["test"], cs=cs, task=net.task, select=select
    )
    result = _record("linear", net, tokens, split, feats)
    result |= {**probe, "metrics": probe[split]}  # type: ignore[literal-required]
    write_result(result, net.run_dir, json_path, net.trained_on)
    return result


@reports_errors("dino-mx eval")
def main(argv: list[str]) -> int:
    """Run ``dino-mx eval``; returns the exit status (2: bad usage or input, one line)."""
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
    if args.command == "localize":
        return run_localize(args)
    if args.command == "knn":
        tokens = args.tokens or "cls"
        result = evaluate_knn(
            args.ckpt, tokens=tokens, ks=args.ks, temperature=args.temperature, **kwargs
        )
    else:
        tokens = args.tokens or "cls+mean"
        result = evaluate_linear(args.ckpt, tokens=tokens, cs=args.cs, select=args.select, **kwargs)
    print(format_result(result))
    return 0

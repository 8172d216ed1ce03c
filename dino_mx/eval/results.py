"""Evaluation results: their file names under ``RUN/eval/``, strict JSON, and the printed table.

A run's own evaluation keeps the plain name (``knn.json``, ``linear.json``, ``localize.json``:
the teacher on the test split of the data it was trained on). Anything else gets its own file,
so evaluating a run on other data, the student or the val split overwrites nothing:
``knn@bloodcells.json`` (other data), ``knn@pneumoniamnist-64px.json`` (same data, another
size), ``linear_student.json``, ``knn_val.json``, ``knn@bloodcells_student_val.json``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
METRICS = ("accuracy", "auc", "balanced_accuracy", "macro_f1")
DEFAULT_WHICH, DEFAULT_SPLIT = "teacher", "test"


def json_safe(value: Any) -> Any:
    """NaN (an undefined AUC, say) -> null, which strict JSON readers accept."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def result_name(result: dict[str, Any], trained_on: dict[str, Any] | None = None) -> str:
    """File name of ``result`` in ``RUN/eval/`` (see the module docstring).

    Args:
        result: Holds ``eval`` and, when they matter, ``data`` (``{name, size}``), ``which``
            and ``split``.
        trained_on: ``{name, size}`` of the run's training data; None: the result's data is
            taken to be the run's own.
    """
    name = result["eval"]
    data = result.get("data")
    if trained_on is not None and data is not None:
        if data["size"] != trained_on["size"]:
            name += f"@{data['name']}-{data['size']}px"
        elif data["name"] != trained_on["name"]:
            name += f"@{data['name']}"
    for key, default in (("which", DEFAULT_WHICH), ("split", DEFAULT_SPLIT)):
        value = result.get(key)
        if value is not None and value != default:
            name += f"_{value}"
    return f"{name}.json"


def write_result(
    result: dict[str, Any],
    run_dir: Path | None,
    json_path: str | Path | None,
    trained_on: dict[str, Any] | None = None,
) -> None:
    """Write ``result`` as JSON to ``json_path`` and, for a run, to
    ``RUN/eval/`` :func:`result_name`."""
    text = json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n"
    targets = [Path(json_path)] if json_path else []
    if run_dir is not None:
        targets.append(run_dir / "eval" / result_name(result, trained_on))
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        log.info("wrote %s", path)


def _cell(value: float | None, width: int) -> str:
    missing = value is None or math.isnan(value)
    return f"  {'-':>{width}}" if missing else f"  {value:>{width}.4f}"


def metrics_table(rows: list[tuple[str, dict[str, float]]], first: str) -> str:
    """Rows of metrics under column headers; a missing or NaN value prints as ``-``."""
    columns = [m for m in METRICS if any(m in r for _, r in rows)]
    width = max(len(first), *(len(name) for name, _ in rows))
    lines = [f"{first:<{width}}" + "".join(f"  {c:>8}" for c in columns)]
    for name, r in rows:
        cells = (_cell(r.get(c), max(len(c), 8)) for c in columns)
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def network_label(result: dict[str, Any]) -> str:
    """``teacher, step 300 (best checkpoint)``: the network, and for a checkpoint its step and
    how it was chosen (a run's best or latest; nothing for a folder named directly)."""
    step = f", step {result['step']}" if result.get("step") is not None else ""
    choice = result.get("checkpoint_choice")
    how = f" ({choice} checkpoint)" if choice in ("best", "latest") else ""
    return f"{result['network']}{step}{how}"


def format_result(result: dict[str, Any]) -> str:
    """A human-readable report of a k-NN or linear-probe result."""
    d = result["data"]
    head = (
        f"{result['eval']} | {network_label(result)} | tokens {result['tokens']} | "
        f"{d['name']} ({d['size']} px data, {d['image_size']} px input, {result['task']}) | "
        f"{result['n_train']} train / {result['n_eval']} {result['split']}, "
        f"dim {result['feature_dim']}"
    )
    if result["eval"] == "knn":
        rows = [(f"k={k}", m) for k, m in result["metrics"].items()]
        return f"{head}, T={result['temperature']}\n{metrics_table(rows, 'k')}"
    select = result["select"]
    sweep = "  ".join(
        f"C={p['c']:g}: {_cell(p[f'val_{select}'], 0).strip()}" for p in result["sweep"]
    )
    rows = [(s, result[s]) for s in ("val", "test")]
    return (
        f"{head}\nval {select} per C: {sweep}\nbest C = {result['best_c']:g}\n"
        f"{metrics_table(rows, 'split')}"
    )

"""Writing evaluation results: strict JSON to ``--json`` and to ``RUN/eval/{eval}.json``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def json_safe(value: Any) -> Any:
    """NaN (an undefined AUC, say) -> null, which strict JSON readers accept."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def write_result(
    result: dict[str, Any], run_dir: Path | None, json_path: str | Path | None
) -> None:
    """Write ``result`` as JSON to ``json_path`` and, for a run, ``RUN/eval/{eval}.json``."""
    text = json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n"
    targets = [Path(json_path)] if json_path else []
    if run_dir is not None:
        targets.append(run_dir / "eval" / f"{result['eval']}.json")
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        log.info("wrote %s", path)

"""How many parameters a run trains, per block group: the first thing to check of an adapter."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from dino_mx.models.blocks import block_index, block_prefix

log = logging.getLogger(__name__)
REPORT_FILE = "parameters.txt"


@dataclass
class ParamRow:
    """One group of parameters: ``embeddings``, ``block 3``, ``blocks 0-5``, ``head``, ..."""

    group: str
    total: int
    trainable: int

    @property
    def percent(self) -> float:
        """Trainable share of the group, in %."""
        return 100.0 * self.trainable / self.total if self.total else 0.0


def _count(params: list[nn.Parameter]) -> tuple[int, int]:
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def parameter_report(
    backbone: nn.Module, head: nn.Module, projector: nn.Module | None = None
) -> list[ParamRow]:
    """Total and trainable parameters of the embeddings, each block, the rest of the backbone
    (final norm), the head and the distillation projector (when there is one), plus an ``all``
    row.

    Consecutive blocks with the same counts are folded into one row (``blocks 0-5``), so a
    12-block LoRA model reads in one line and freeze-6 in two.

    Args:
        backbone: The Hugging Face model (``Backbone.model``), adapters included.
        head: The DINO head.
        projector: The distillation projection (``distill=teacher``).
    """
    prefix = block_prefix(backbone)
    embeddings, rest = [], []
    blocks: dict[int, list[nn.Parameter]] = {}
    for name, p in backbone.named_parameters():
        index = block_index(name, prefix)
        if index is not None:
            blocks.setdefault(index, []).append(p)
        elif name.startswith("embeddings."):
            embeddings.append(p)
        else:
            rest.append(p)
    rows = [ParamRow("embeddings", *_count(embeddings))]
    start, previous = -1, None
    for i in sorted(blocks):  # blocks are numbered 0..depth-1
        counts = _count(blocks[i])
        if counts == previous:
            total, trainable = rows[-1].total + counts[0], rows[-1].trainable + counts[1]
            rows[-1] = ParamRow(f"blocks {start}-{i}", total, trainable)
        else:
            start, previous = i, counts
            rows.append(ParamRow(f"block {i}", *counts))
    rows.append(ParamRow("final norm", *_count(rest)))
    rows.append(ParamRow("head", *_count(list(head.parameters()))))
    if projector is not None:
        rows.append(ParamRow("projector", *_count(list(projector.parameters()))))
    rows.append(ParamRow("all", sum(r.total for r in rows), sum(r.trainable for r in rows)))
    return rows


def format_report(rows: list[ParamRow]) -> str:
    """A fixed-width table: group, parameters, trainable, trainable %."""
    width = max(len(r.group) for r in rows)
    lines = [f"{'group':<{width}}  {'params':>12}  {'trainable':>12}  {'%':>6}"]
    for r in rows:
        lines.append(f"{r.group:<{width}}  {r.total:>12,}  {r.trainable:>12,}  {r.percent:>6.2f}")
    return "\n".join(lines)


def log_parameters(
    backbone: nn.Module,
    head: nn.Module,
    run_dir: Path | None = None,
    projector: nn.Module | None = None,
) -> str:
    """Log the :func:`parameter_report` table (INFO, printed by ``dino-mx train``) and write
    it to ``run_dir/parameters.txt`` when a run directory is given; returns the table."""
    table = format_report(parameter_report(backbone, head, projector))
    log.info("parameters:\n%s", table)
    if run_dir is not None:
        Path(run_dir, REPORT_FILE).write_text(table + "\n")
    return table

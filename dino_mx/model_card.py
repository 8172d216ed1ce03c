"""The model card of an exported folder: ``README.md`` as the Hugging Face Hub reads it.

YAML front matter (``library_name``, ``license``, ``tags``, ``base_model`` when training started
from a Hub model), then what a user needs: the base
model, the data, the method and its settings, which network at which step, the evaluation
figures found in ``RUN/eval/*.json``, and how to load the folder with the normalisation to
apply. :func:`card_facts` reads the training config; :func:`render_model_card` takes only
those facts.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from dino_mx.models.adapters import build_adapter

CARD_FILE = "README.md"
TAGS = ("dino-mx", "dino", "self-supervised", "medical-imaging", "vision-transformer")
DEFAULT_LICENSE = "apache-2.0"  # dino-mx's; a base model's own licence may differ
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class CardFacts:
    """Everything the card says about one exported network (plain values, no config)."""

    which: str  # teacher | student
    step: int
    model: str  # preset name, e.g. vit_micro
    model_type: str  # transformers model_type of the export, e.g. vit, dinov2
    hidden_size: int
    depth: int
    patch_size: int
    num_channels: int
    pretrained: str | None  # what training started from; None: random init
    base_model: str | None  # the Hub id of ``pretrained`` when it is one
    data_name: str
    data_flag: str | None
    data_format: str
    data_size: int  # pixels of the stored images (MedMNIST's size)
    method: str  # dinov1 | dinov2
    adapter: str  # e.g. "full", "lora (r 8, alpha 16.0, targets attention)"
    max_steps: int
    batch_size: int  # per process, times gradient accumulation
    image_size: int  # global crop side, the input size the features were trained at
    local_size: int
    n_local: int
    mean: list[float]
    std: list[float]
    distill_model: str | None = None
    license: str = DEFAULT_LICENSE


def hub_base_model(pretrained: str | None) -> str | None:
    """The Hub id training started from, or None for random init or a local folder."""
    if not pretrained or Path(pretrained).expanduser().exists():
        return None
    return pretrained if _HUB_ID.match(pretrained) else None


def card_facts(
    cfg: DictConfig,
    info: dict[str, Any],
    hf_config: dict[str, Any],
    license: str = DEFAULT_LICENSE,
) -> CardFacts:
    """Collect the card's facts from a run's resolved config and the export's records.

    Args:
        cfg: The resolved training config saved beside the checkpoint.
        info: What ``dino_mx_export.json`` holds (``which``, ``step``, ``adapter``, ...).
        hf_config: The exported ``config.json`` as a dict.
        license: The Hub licence identifier written in the front matter.
    """
    pretrained = cfg.model.get("pretrained")
    data = cfg.data
    distill = cfg.get("distill")
    return CardFacts(
        which=info["which"],
        step=int(info["step"]),
        model=str(cfg.model.name),
        model_type=str(hf_config.get("model_type", "vit")),
        hidden_size=int(hf_config.get("hidden_size", cfg.model.hidden_size)),
        depth=int(hf_config.get("num_hidden_layers", cfg.model.depth)),
        patch_size=int(hf_config.get("patch_size", cfg.model.patch_size)),
        num_channels=int(hf_config.get("num_channels", 3)),
        pretrained=pretrained,
        base_model=hub_base_model(pretrained),
        data_name=str(data.name),
        data_flag=data.get("flag"),
        data_format=str(data.format),
        data_size=int(data.size),
        method=str(cfg.method.name),
        adapter=build_adapter(info.get("adapter")).describe(),
        max_steps=int(cfg.trainer.max_steps),
        batch_size=int(cfg.trainer.batch_size) * int(cfg.trainer.get("grad_accum", 1)),
        image_size=int(cfg.augment.global_size),
        local_size=int(cfg.augment.local_size),
        n_local=int(cfg.augment.n_local),
        mean=[float(v) for v in data.mean],
        std=[float(v) for v in data.std],
        distill_model=distill.model if distill is not None and distill.name != "none" else None,
        license=license,
    )


def read_eval_results(run_dir: Path | None) -> dict[str, dict[str, Any]]:
    """The JSON results in ``RUN/eval`` by file stem (knn, linear, localize, demo, ...);
    files that are not JSON objects are skipped."""
    if run_dir is None or not (run_dir / "eval").is_dir():
        return {}
    results = {}
    for path in sorted((run_dir / "eval").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            results[path.stem] = data
    return results


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items() if not isinstance(v, dict))


def _source(result: dict[str, Any]) -> str:
    step = f" at step {result['step']}" if result.get("step") is not None else ""
    tokens = f", tokens {result['tokens']}" if result.get("tokens") else ""
    data = result.get("data", {}).get("name", "?")
    return f"{result.get('network', '?')}{step}, {data}{tokens}"  # teacher, student, pixels


def eval_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines reporting each result; a line saying so when there is none."""
    lines = []
    for name, r in results.items():
        kind = r.get("eval")
        if kind == "knn":
            for k, m in r.get("metrics", {}).items():
                lines.append(f"- k-NN (k = {k}, {_source(r)}), {r.get('split')}: {_metrics(m)}")
        elif kind == "linear":
            for split in ("val", "test"):
                if split in r:
                    lines.append(
                        f"- linear probe (C = {r.get('best_c')}, {_source(r)}), {split}: "
                        f"{_metrics(r[split])}"
                    )
        elif kind == "localize":
            lines.append(
                f"- attention localisation ({_source(r)}, class {r.get('roi_class') or 'all'}, "
                f"{r.get('split')}): {_metrics(r.get('metrics', {}))}"
            )
        elif name == "demo" and "rows" in r:
            lines.append(f"- `dino-mx demo` (k-NN k = {r.get('k')}, tokens {r.get('tokens')}):")
            lines += [f"  - {row}: {_metrics(m)}" for row, m in r["rows"].items()]
    if not lines:
        return ["None: no evaluation results were found in the run's `eval/` folder."]
    return lines


def front_matter(facts: CardFacts) -> dict[str, Any]:
    """The card's YAML metadata, as the Hub reads it."""
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "license": facts.license,
        "tags": list(TAGS),
        "pipeline_tag": "image-feature-extraction",
    }
    if facts.base_model:
        meta["base_model"] = facts.base_model
    return meta


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _training_images(facts: CardFacts, evals: dict[str, dict[str, Any]]) -> str:
    """How many images trained the network, as the card says it. The run's config does not
    record the count: it comes from an evaluation on the training data (not on another
    dataset), else the card just says "images"."""
    n_train = next(
        (
            r["n_train"]
            for r in evals.values()
            if "n_train" in r and r.get("data", {}).get("name") == facts.data_name
        ),
        None,
    )
    return f"{n_train} training images" if n_train is not None else "images"


def training_lines(facts: CardFacts, evals: dict[str, dict[str, Any]]) -> list[str]:
    """The card's "Training" section: base model, data, method, steps, crops, normalisation
    and, for a distilled run, its teacher; what a reader needs to reuse the features."""
    base = facts.pretrained or f"none (random init of the `{facts.model}` preset)"
    data = facts.data_name
    if facts.data_flag and facts.data_flag != facts.data_name:
        data += f" (MedMNIST flag `{facts.data_flag}`)"
    images = _training_images(facts, evals)
    channels = _plural(facts.num_channels, "channel")
    training = [
        f"- Base model: {base}",
        f"- Data: {data}, {facts.data_format} format, {images} of {facts.data_size} px, "
        f"{channels}; trained on the train split, labels unused",
        f"- Method: {facts.method}, adapter {facts.adapter}",
        f"- Steps: {facts.max_steps}, batch {facts.batch_size} per process",
        f"- Crops: 2 global of {facts.image_size} px, {facts.n_local} local of "
        f"{facts.local_size} px",
        f"- Normalisation: mean {facts.mean}, std {facts.std}",
    ]
    if facts.distill_model:
        training.append(f"- Distilled from: {facts.distill_model}")
    return training


def render_model_card(facts: CardFacts, evals: dict[str, dict[str, Any]]) -> str:
    """The whole ``README.md``: front matter and body."""
    meta = yaml.safe_dump(front_matter(facts), sort_keys=False)
    backbone = (
        f"A `transformers` {facts.model_type} backbone ({_plural(facts.depth, 'block')}, "
        f"width {facts.hidden_size}, patch {facts.patch_size}, "
        f"{_plural(facts.num_channels, 'channel')}) trained with DINO-family self-supervision "
        "by dino-mx."
    )
    training = training_lines(facts, evals)
    shape = f"(B, {facts.num_channels}, {facts.image_size}, {facts.image_size})"
    return f"""---
{meta}---

# {facts.model} trained with dino-mx ({facts.method})

{backbone}

This folder holds the **{facts.which}** network at **step {facts.step}**.

## Training

{chr(10).join(training)}

## Evaluation

Frozen features; the train split is the k-NN memory bank and the probe's training set.

{chr(10).join(eval_lines(evals))}

## Usage

Scale pixels to [0, 1] and normalise them with the training data's mean and std; the features
were trained at {facts.image_size} px.

```python
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained("PATH_OR_REPO").eval()
mean = torch.tensor({facts.mean}).view(1, -1, 1, 1)
std = torch.tensor({facts.std}).view(1, -1, 1, 1)
# images: {shape} floats in [0, 1]
with torch.no_grad():
    features = model(pixel_values=(images - mean) / std).last_hidden_state[:, 0]  # CLS
```
"""


def write_model_card(
    folder: Path,
    cfg: DictConfig,
    info: dict[str, Any],
    run_dir: Path | None,
    license: str = DEFAULT_LICENSE,
) -> Path:
    """Write ``folder/README.md`` for an export whose ``config.json`` is already there."""
    hf_config = json.loads((folder / "config.json").read_text())
    facts = card_facts(cfg, info, hf_config, license)
    path = folder / CARD_FILE
    path.write_text(render_model_card(facts, read_eval_results(run_dir)))
    return path

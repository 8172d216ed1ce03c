"""``dino-mx eval localize``: does the attention land on the annotated regions?

The DINO-MX paper judges label-guided training by how well the last-layer CLS attention
(head mean) localises the annotated structures, with three scores per image, averaged over
the images that have a box of the chosen class:

- precision: share of the thresholded attention's mass that lies inside the boxes;
- recall: share of the box area covered by the thresholded attention;
- pointing: 1 if the attention peak (centre of the highest patch) lies inside a box.

The threshold keeps the top ``keep`` of the attention mass (DINO's masks, default 0.6). A
uniform map scores a precision equal to the boxes' share of the image (``box_fraction``,
reported as the chance level). Launch it as

    dino-mx eval localize --ckpt runs/lg --data bccd_roi --data-root ../shared/data --roi-class WBC
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from dino_mx.eval.attention import cls_attention, top_mass_mask, upsample
from dino_mx.eval.features import eval_dataset
from dino_mx.eval.network import Network, NetworkSpec, load_network
from dino_mx.eval.results import network_label, write_result
from dino_mx.models.backbone import Backbone, build_seeded_backbone

log = logging.getLogger(__name__)
SCORES = ("precision", "recall", "pointing", "box_fraction")


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Pixels whose centre lies in any box.

    Args:
        boxes: (k, 4) ``x0, y0, x1, y1`` pixel edges.
        height, width: Image size.

    Returns:
        Boolean (height, width); pixel (i, j) is in when ``x0 <= j + 0.5 < x1`` and
        ``y0 <= i + 0.5 < y1`` for some box.
    """
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    b = boxes.float().reshape(-1, 4, 1)  # (k, 4, 1)
    in_x = (xs >= b[:, 0]) & (xs < b[:, 2])  # (k, W)
    in_y = (ys >= b[:, 1]) & (ys < b[:, 3])  # (k, H)
    return (in_y[:, :, None] & in_x[:, None, :]).any(0)


def localization_scores(
    attention: Tensor, boxes: Tensor, size: tuple[int, int], keep: float = 0.6
) -> dict[str, float]:
    """Precision, recall and pointing of one attention map against the boxes of one image.

    Args:
        attention: (h, w) non-negative patch-level map covering the whole image.
        boxes: (k, 4) ``x0, y0, x1, y1`` in pixels of an image of ``size``.
        size: ``(H, W)`` of the image the boxes refer to.
        keep: Fraction of attention mass kept by the threshold (:func:`top_mass_mask`).

    Returns:
        ``precision``, ``recall``, ``pointing`` (0 or 1) and ``box_fraction`` (the boxes' share
        of the image: a uniform map's precision). Recall is NaN when no pixel is in a box.
    """
    (h, w), (H, W) = attention.shape, size
    attention = attention.float().cpu()
    kept = F.interpolate(top_mass_mask(attention, keep)[None, None].float(), size=size)[0, 0] > 0
    density = upsample(attention[None, None], size)[0, 0]  # (H, W), same total mass
    inside = box_mask(boxes.cpu(), H, W)
    kept_mass = density[kept].sum()
    precision = float(density[kept & inside].sum() / kept_mass) if kept_mass > 0 else math.nan
    area = int(inside.sum())
    recall = float((kept & inside).sum()) / area if area else math.nan
    row, col = divmod(int(attention.argmax()), w)
    x, y = (col + 0.5) * W / w, (row + 0.5) * H / h  # peak patch centre in pixels
    b = boxes.float().cpu()
    hit = ((b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])).any()
    return {
        "precision": precision,
        "recall": recall,
        "pointing": float(hit),
        "box_fraction": area / (H * W),
    }


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def network_backbone(net: Network, channels: int) -> Backbone:
    """The network's ViT (built for a model baseline); raises for the pixel baseline."""
    if net.backbone is None:
        net.backbone = build_seeded_backbone(net.cfg.model, channels)
    if not isinstance(net.backbone, Backbone):
        raise ValueError("attention needs a ViT: pass --ckpt or --model, not --baseline")
    return net.backbone


def vit_and_data(spec: NetworkSpec, split: str, image_size: int | None) -> tuple[Network, Any, int]:
    """The network, the eval dataset of ``split`` and its input side (default: the training
    global-crop size), as the attention figures and scores read them."""
    net = load_network(spec)
    size = int(image_size or net.image_size)
    channels = net.backbone.num_channels if isinstance(net.backbone, Backbone) else None
    return net, eval_dataset(net.cfg.data, split, size, channels), size


def _score_images(
    backbone: Backbone,
    dataset: Any,
    classes: Any,
    size: int,
    keep: float,
    batch_size: int,
    device: str,
) -> list[dict[str, Any]]:
    """:func:`localization_scores` of every image of ``dataset`` (input side ``size``) with a box
    of ``classes``, the boxes scaled from the image's own size to the input."""
    backbone.eval().to(device)
    per_image, index = [], 0
    for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        maps = cls_attention(backbone, images.as_subclass(Tensor).to(device)).mean(1).cpu()
        for attention in maps:  # (h, w) head mean
            regions = dataset.regions(index).select(classes)
            if len(regions):
                height, width = (int(v) for v in dataset.image_sizes[index])
                scale = torch.tensor([size / width, size / height] * 2)
                scores = localization_scores(attention, regions.boxes * scale, (size, size), keep)
                entry = {"index": index, "id": int(dataset.ids[index]), "n_boxes": len(regions)}
                per_image.append(entry | scores)
            index += 1
    return per_image


def evaluate_localize(
    spec: NetworkSpec,
    *,
    roi_class: str | None = None,
    split: str = "test",
    keep: float = 0.6,
    image_size: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    json_path: str | Path | None = None,
) -> dict[str, Any]:
    """Localisation scores of a network's head-mean CLS attention on ``split``.

    Args:
        spec: The network (a ViT: a checkpoint or a model, not a baseline) and the data, which
            must have regions (roi_npz / coco).
        roi_class: Class name or id whose boxes count; None: every box.
        split: Split scored.
        keep: Attention mass kept by the threshold.
        image_size: Input side; default the training global-crop size.
        batch_size, device: Inference settings.
        json_path: Also write the result here (a run always gets ``RUN/eval/localize.json``).

    Returns:
        The run description, ``metrics`` (means of :data:`SCORES` over the images with a box)
        and ``per_image`` (``index``, ``id``, ``n_boxes`` and the scores).
    """
    if spec.baseline:
        raise ValueError("localize needs a ViT's attention: pass --ckpt or --model")
    net, dataset, size = vit_and_data(spec, split, image_size)
    if not hasattr(dataset, "regions"):
        raise ValueError(
            f"data '{net.cfg.data.name}' has no regions of interest: use a roi_npz or coco "
            "dataset, e.g. --data bccd_roi"
        )
    backbone = network_backbone(net, dataset.channels)
    if size % backbone.patch_size:
        raise ValueError(f"image size {size} is not a multiple of patch {backbone.patch_size}")
    classes = dataset.class_ids([roi_class]) if roi_class is not None else None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    per_image = _score_images(backbone, dataset, classes, size, keep, batch_size, device)
    data_cfg = net.cfg.data
    result = {
        "eval": "localize",
        **net.describe(),
        "data": {"name": data_cfg.name, "size": data_cfg.size, "image_size": size},
        "split": split,
        "roi_class": roi_class,
        "keep": keep,
        "n_images": len(per_image),
        "n_skipped": len(dataset) - len(per_image),
        "metrics": {s: _mean([e[s] for e in per_image]) for s in SCORES},
        "per_image": per_image,
    }
    write_result(result, net.run_dir, json_path, net.trained_on)
    return result


def format_localize(result: dict[str, Any]) -> str:
    """One-paragraph report of an :func:`evaluate_localize` result."""
    m, d = result["metrics"], result["data"]
    return (
        f"localize | {network_label(result)} | {d['name']} {result['split']} at "
        f"{d['image_size']} px | class {result['roi_class'] or 'all'} | keep {result['keep']}\n"
        f"{result['n_images']} images with boxes ({result['n_skipped']} without)\n"
        f"precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
        f"pointing {m['pointing']:.4f}  (chance precision {m['box_fraction']:.4f})"
    )

"""Localisation scores by hand on synthetic maps and boxes, then `dino-mx eval localize`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dino_mx.cli import main as dino_mx_main
from dino_mx.eval.localize import box_mask, evaluate_localize, localization_scores
from dino_mx.eval.network import NetworkSpec

BOX = torch.tensor([[0.0, 0.0, 4.0, 4.0]])  # the top-left 2 x 2 patches of an 8 px image


def test_box_mask_uses_pixel_centres():
    assert box_mask(BOX, 8, 8).sum() == 16
    assert box_mask(torch.tensor([[0.4, 0.6, 2.6, 2.4]]), 4, 4).tolist() == [
        [False, False, False, False],
        [True, True, True, False],
        [False, False, False, False],
        [False, False, False, False],
    ]
    assert box_mask(torch.tensor([[0.0, 0, 2, 2], [1.0, 1, 3, 3]]), 4, 4).sum() == 7  # union


def test_map_inside_the_box_scores_precision_one_and_outside_zero():
    inside = torch.zeros(4, 4)
    inside[0, 0], inside[1, 1] = 0.7, 0.3
    scores = localization_scores(inside, BOX, (8, 8), keep=1.0)
    assert scores["precision"] == 1.0 and scores["pointing"] == 1.0
    assert scores["recall"] == 0.5  # 2 of the box's 4 patches
    assert scores["box_fraction"] == 0.25
    outside = inside.flip(0, 1)
    scores = localization_scores(outside, BOX, (8, 8), keep=1.0)
    assert scores["precision"] == 0.0 and scores["recall"] == 0.0 and scores["pointing"] == 0.0


def test_scores_equal_a_hand_computation():
    # Patch values 0.4 (in the box), 0.3 (outside), 0.2 (in), 0.1 (outside); keep 0.6 keeps the
    # 0.4 and 0.3 patches (cumulative ascending mass 0.6 and 1.0 exceed 0.4).
    attention = torch.zeros(4, 4)
    attention[1, 0], attention[3, 3], attention[0, 1], attention[2, 0] = 0.4, 0.3, 0.2, 0.1
    scores = localization_scores(attention, BOX, (8, 8), keep=0.6)
    assert math.isclose(scores["precision"], 0.4 / 0.7, rel_tol=1e-6)
    assert scores["recall"] == 4 / 16  # one 2 x 2 px patch of the 16 px box
    assert scores["pointing"] == 1.0
    # The peak moves outside: pointing fails, the kept set is unchanged.
    attention[3, 3] = 0.5
    moved = localization_scores(attention, BOX, (8, 8), keep=0.6)
    assert moved["pointing"] == 0.0 and math.isclose(moved["precision"], 0.4 / 0.9, rel_tol=1e-6)


def test_scores_on_a_non_aligned_box_and_a_larger_image():
    # Box covering pixels 0..5 x 0..2 of a 16 px image with 4 px patches (4 x 4 map).
    attention = torch.full((4, 4), 1 / 16)
    box = torch.tensor([[0.0, 0.0, 6.0, 3.0]])
    scores = localization_scores(attention, box, (16, 16), keep=1.0)
    assert math.isclose(scores["precision"], 18 / 256, rel_tol=1e-6)  # uniform: box share
    assert scores["recall"] == 1.0 and scores["box_fraction"] == 18 / 256


def test_evaluate_localize_writes_per_image_and_mean_scores(roi_run, capsys):
    result = evaluate_localize(NetworkSpec(roi_run), roi_class="WBC")
    assert (
        result["n_images"] == 4 and result["n_skipped"] == 0 and result["data"]["image_size"] == 16
    )
    for name in ("precision", "recall", "pointing"):
        values = [e[name] for e in result["per_image"]]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert math.isclose(result["metrics"][name], sum(values) / 4, rel_tol=1e-9)
    saved = json.loads((roi_run / "eval" / "localize.json").read_text())
    assert saved["metrics"] == pytest.approx(result["metrics"]) and saved["roi_class"] == "WBC"
    # RBC boxes only exist in even images: two test images are skipped.
    rbc = evaluate_localize(NetworkSpec(roi_run), roi_class="RBC", image_size=32)
    assert rbc["n_images"] == 2 and rbc["n_skipped"] == 2
    assert rbc["metrics"]["box_fraction"] == pytest.approx(16 / 1024)  # 4 x 4 px of 32 x 32
    # The command prints the scores and accepts the same options.
    assert dino_mx_main(["eval", "localize", "--ckpt", str(roi_run), "--roi-class", "0"]) == 0
    assert "precision" in capsys.readouterr().out
    assert dino_mx_main(["eval", "localize", "--ckpt", str(roi_run), "--roi-class", "X"]) == 2
    assert "valid classes: 0 WBC, 1 RBC, 2 platelets" in capsys.readouterr().err


def test_localize_needs_data_with_regions(roi_run, capsys):
    code = dino_mx_main(["eval", "localize", "--ckpt", str(roi_run), "--data", "pneumoniamnist"])
    assert code == 2 and "no regions of interest" in capsys.readouterr().err

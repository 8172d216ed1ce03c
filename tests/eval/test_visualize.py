"""Patch PCA and k-means on features with a known answer, PIL rendering, `dino-mx visualize`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dino_mx.cli import main as dino_mx_main
from dino_mx.eval import render
from dino_mx.eval.patches import foreground, kmeans_segments, pca_rgb


def two_region_features(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(2, 6, 6, 16) features: a 2 x 2 'object' in the middle of each image and background
    around, two directions plus noise; and the object mask (2, 6, 6)."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((2, 6, 6), bool)
    obj[:, 2:4, 2:4] = True
    thing, background = rng.normal(size=(2, 16))
    noise = rng.normal(scale=0.05, size=(2, 6, 6, 16))
    features = noise + np.where(obj[..., None], thing, background)
    return features, obj


def test_foreground_is_the_object_whatever_the_component_sign():
    features, obj = two_region_features()
    assert (foreground(features) == obj).all()
    assert (foreground(-features) == obj).all()  # sign flipped: still the centre


def test_pca_rgb_blackens_the_background_and_scales_the_object():
    features, obj = two_region_features()
    rgb, mask = pca_rgb(features)
    assert rgb.shape == (2, 6, 6, 3) and (mask == obj).all()
    assert (rgb[~obj] == 0).all() and rgb[obj].max() == 1.0 and rgb.min() == 0.0
    everything, all_mask = pca_rgb(features, threshold=None)
    assert all_mask.all() and everything.max() == 1.0


def test_kmeans_finds_the_two_regions():
    features, obj = two_region_features()
    segments = kmeans_segments(features, k=2)
    assert segments.shape == (2, 6, 6)
    assert len(np.unique(segments[obj])) == 1 and len(np.unique(segments[~obj])) == 1
    assert segments[obj][0] != segments[~obj][0]
    with pytest.raises(ValueError, match="k must be"):
        kmeans_segments(features, k=100)


def test_render_colours_and_grid():
    colours = render.heat_colors(np.array([[0.0, 1.0], [0.5, 0.25]]))
    assert colours[0, 0].tolist() == [0, 0, 4] and colours[0, 1].tolist() == [252, 255, 164]
    image = np.full((4, 4, 3), 200, np.uint8)
    assert (render.mask_overlay(image, np.eye(4, dtype=bool))[0, 1] == 50).all()
    boxed = render.draw_boxes(np.zeros((8, 8, 3), np.uint8), np.array([[1, 1, 5, 5]]), [1])
    assert boxed[1, 1].tolist() == render.PALETTE[1].tolist() and boxed[3, 3].sum() == 0
    grid = render.grid([[image, image, image], [image]], ["a", "b", "c"], pad=2)
    assert grid.size == (3 * 6 + 2, 12 + 2 * 6 + 2)


@pytest.mark.parametrize("kind", ["attention", "pca"])
def test_visualize_writes_pngs_into_the_run(roi_run, kind, capsys):
    args = ["visualize", kind, "--ckpt", str(roi_run), "--n", "3", "--k", "2"]
    assert dino_mx_main(args) == 0
    path = roi_run / "samples" / f"{kind}_test.png"
    assert capsys.readouterr().out.strip() == str(path)
    with Image.open(path) as png:
        # Tiles of 128 px (16 px input x 8); columns: image, mean, mask, 2 heads / image, PCA, k.
        columns = 5 if kind == "attention" else 3
        assert png.format == "PNG" and png.size == (columns * 130 + 2, 12 + 3 * 130 + 2)


def test_visualize_a_baseline_needs_an_output_folder(tmp_path, roi_run, capsys):
    data = ["--data", "bccd_roi", "--data-root", str(roi_run.parent), "--override", "data.size=32"]
    model = ["--model", "vit_micro", "--override", "augment.global_size=32"]
    assert dino_mx_main(["visualize", "attention", *model, *data]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dino-mx visualize: error: ") and "--out" in err
    out = tmp_path / "figs"
    assert dino_mx_main(["visualize", "attention", *model, *data, "--out", str(out)]) == 0
    assert (out / "attention_test.png").is_file()

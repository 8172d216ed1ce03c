"""Label-guided crops: geometry on synthetic boxes, fallback, constant view count, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dino_mx.data import (
    CropRecipe,
    LabelGuidedCrop,
    MultiCrop,
    Regions,
    RoiDataset,
    SeededAugment,
    build_augment,
    build_dataset,
    roi_crop_box,
)
from dino_mx.train import train
from tests.conftest import SHARED_DATA, make_config

BCCD = SHARED_DATA / "bccd_roi_128.npz"
PLAIN = dict(color_jitter=0, grayscale=0, blur=(0, 0, 0), solarize=0, hflip=0)


def multicrop(n_local: int = 2, **kwargs) -> MultiCrop:
    """3-channel multi-crop, 32 px globals, 16 px locals, identity normalisation."""
    return MultiCrop(
        3, [0.0], [1.0], CropRecipe(global_size=32, local_size=16, n_local=n_local, **kwargs)
    )


def square_image(boxes: list[tuple[int, int, int, int, int]], size: int = 64) -> torch.Tensor:
    """Black (3, size, size) uint8 image with boxes (x0, y0, x1, y1, grey value) painted."""
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    for x0, y0, x1, y1, value in boxes:
        image[:, y0:y1, x0:x1] = value
    return image


BOXES = [  # x0, y0, x1, y1 in a 100 x 80 image: centre, corners, edges, tiny, larger than image
    (40.0, 30.0, 60.0, 50.0),
    (0.0, 0.0, 10.0, 6.0),
    (90.0, 70.0, 100.0, 80.0),
    (48.5, 0.0, 51.5, 3.0),
    (0.0, 10.0, 95.0, 70.0),
    (20.0, 5.0, 90.0, 80.0),
]


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.3, 0.49])
@pytest.mark.parametrize("box", BOXES)
def test_roi_crop_contains_the_region_and_respects_the_jitter_bound(box, jitter):
    height, width, scale = 80, 100, (1.0, 2.0)
    x0, y0, x1, y1 = box
    bcx, bcy, longer = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    torch.manual_seed(0)
    for _ in range(200):
        top, left, side = roi_crop_box(torch.tensor(box), height, width, scale, jitter)
        cx, cy = left + side / 2, top + side / 2
        # The chosen region's centre is in the crop, and so is the whole region (scale >= 1).
        assert left <= bcx <= left + side and top <= bcy <= top + side
        assert left - 1e-4 <= x0 and x1 <= left + side + 1e-4
        assert top - 1e-4 <= y0 and y1 <= top + side + 1e-4
        # Jitter bound: the centre moved at most jitter * side on each axis.
        assert abs(cx - bcx) <= jitter * side + 1e-4 and abs(cy - bcy) <= jitter * side + 1e-4
        # Scale: at least the region, at most scale[1] times it (or the image's short side).
        assert longer - 1e-4 <= side <= max(scale[1] * longer, 1.0) + 1e-4
        assert side <= max(min(height, width), longer) + 1e-4


def test_crop_stays_inside_the_image_when_the_jitter_allows_it():
    torch.manual_seed(1)
    for _ in range(100):  # a box at the left edge: the jitter interval reaches inside
        top, left, side = roi_crop_box(
            torch.tensor([0.0, 30.0, 20.0, 50.0]), 80, 100, (1.5, 1.5), 0.3
        )
        assert left >= -1e-4 and math.isclose(side, 30.0)


def test_roi_view_without_jitter_is_exactly_the_region():
    # A white 16 px box, crop scale 1 and no jitter: the 16 px view is the box, all ones.
    lg = LabelGuidedCrop(
        multicrop(**PLAIN), 16, roi_crops=3, roi_prob=1.0, roi_jitter=0.0, roi_scale=(1.0, 1.0)
    )
    image = square_image([(8, 20, 24, 36, 255)])
    regions = Regions(torch.tensor([[8.0, 20.0, 24.0, 36.0]]), torch.tensor([0]))
    views = lg(image, regions)
    assert lg.n_views == len(views) == 7
    for view in views[4:]:
        torch.testing.assert_close(view, torch.ones(3, 16, 16))


def test_roi_view_centre_pixel_is_the_region_centre_under_jitter():
    # Jitter moves the crop but the region's centre stays in it: find it in the view.
    lg = LabelGuidedCrop(
        multicrop(**PLAIN), 16, roi_crops=1, roi_prob=1.0, roi_jitter=0.3, roi_scale=(1.5, 2.5)
    )
    image = square_image([(28, 28, 36, 36, 255)])
    box = torch.tensor([28.0, 28.0, 36.0, 36.0])
    torch.manual_seed(0)
    for _ in range(50):
        view, (top, left, side) = lg.roi_view(image, box)
        u = int((32 - round(left)) / max(1, round(side)) * 16)  # region centre in view pixels
        v = int((32 - round(top)) / max(1, round(side)) * 16)
        assert view[:, v - 1 : v + 1, u - 1 : u + 1].mean() > 0.9


def test_guided_crops_only_use_the_selected_classes():
    lg = LabelGuidedCrop(
        multicrop(**PLAIN),
        16,
        roi_crops=4,
        roi_prob=1.0,
        roi_classes=[1],
        roi_jitter=0.0,
        roi_scale=(1.0, 1.0),
    )
    image = square_image([(0, 0, 16, 16, 255), (40, 40, 56, 56, 51)])
    regions = Regions(torch.tensor([[0.0, 0, 16, 16], [40.0, 40, 56, 56]]), torch.tensor([0, 1]))
    for view in lg(image, regions)[4:]:
        torch.testing.assert_close(view, torch.full((3, 16, 16), 0.2))  # 51 / 255


@pytest.mark.parametrize("regions", [None, Regions.empty(), "other-class"])
def test_image_without_regions_falls_back_to_random_local_crops(regions):
    # Without a region of the chosen classes the extra crops are ordinary local crops: exactly
    # the views of a multi-crop with n_local + roi_crops locals, under the same seed.
    if regions == "other-class":
        regions = Regions(torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([0]))
    image = torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8)
    lg = LabelGuidedCrop(multicrop(2), 16, roi_crops=3, roi_prob=1.0, roi_classes=[1])
    torch.manual_seed(5)
    guided = lg(image, regions)
    torch.manual_seed(5)
    plain = multicrop(5)(image)
    assert len(guided) == len(plain) == 7
    assert all(torch.equal(a, b) for a, b in zip(guided, plain))


def test_view_count_is_constant_so_batches_collate():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    dataset = RoiDataset(
        images,
        np.zeros(4),
        np.array([[5, 5, 20, 20], [0, 0, 40, 40]]),
        np.array([0, 2]),
        np.array([0, 0]),
        ["cell"],
        channels=3,
    )
    lg = LabelGuidedCrop(multicrop(2), 16, roi_crops=2, roi_prob=0.5)
    loader = DataLoader(
        SeededAugment(dataset, lg), batch_size=4, sampler=[(i, i) for i in range(4)]
    )
    crops, labels = next(iter(loader))
    assert len(crops) == lg.n_views == 6 and labels.tolist() == [0, 0, 0, 0]
    assert [tuple(c.shape) for c in crops] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 4


def test_builder_selects_by_name_and_checks_the_data(tmp_path):
    cfg = make_config("augment=label_guided", "augment.roi_classes=[B]")
    dataset = RoiDataset(
        np.zeros((1, 8, 8, 3), np.uint8),
        np.zeros(1),
        np.zeros((0, 4)),
        np.zeros(0),
        np.zeros(0),
        ["A", "B"],
        channels=3,
    )
    lg = build_augment(cfg.augment, dataset, [0.5], [0.5])
    assert isinstance(lg, LabelGuidedCrop) and lg.roi_classes == [1] and lg.roi_crops == 2
    assert isinstance(build_augment(make_config().augment, dataset, [0.5], [0.5]), MultiCrop)
    pneumonia = build_dataset(make_config().data)
    with pytest.raises(ValueError, match="needs regions of interest"):
        build_augment(cfg.augment, pneumonia, [0.5], [0.5])
    cfg.augment.roi_classes = ["WBC"]
    with pytest.raises(ValueError, match="unknown region class 'WBC'; valid classes: 0 A, 1 B"):
        build_augment(cfg.augment, dataset, [0.5], [0.5])
    with pytest.raises(ValueError, match="roi_scale"):
        LabelGuidedCrop(multicrop(), 16, roi_scale=(0.5, 1.0))


@pytest.mark.skipif(not BCCD.is_file(), reason=f"shared BCCD file absent: {BCCD}")
def test_label_guided_trains_on_bccd(tmp_path, smoke_config):
    run = tmp_path / "run"
    cfg = smoke_config(
        run,
        "data=bccd_roi",
        f"data.root={SHARED_DATA}",
        "augment=label_guided",
        "augment.roi_classes=[WBC]",
        "augment.roi_prob=1.0",
        "augment.global_size=32",
        "augment.local_size=16",
        "model.patch_size=8",
        "model.depth=1",
        "model.hidden_size=24",
        "trainer.max_steps=2",
        "trainer.batch_size=4",
    )
    last = train(cfg, run)
    assert math.isfinite(last["loss"]) and last["step"] == 1
    assert (run / "checkpoints" / "step_0000002" / "config.yaml").is_file()

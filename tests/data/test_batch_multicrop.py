import pytest
import torch
from hydra.errors import ConfigCompositionException

from dino_mx.data import BatchMultiCrop, CropRecipe, MultiCrop, build_augment, build_dataset
from dino_mx.errors import one_line
from tests.conftest import make_config

OFF = dict(color_jitter=0, grayscale=0, blur=(0, 0, 0), solarize=0, hflip=0)


def batch_crop(channels=3, **kwargs):
    args = dict(global_size=16, local_size=8, n_local=3) | kwargs
    return BatchMultiCrop(channels, [0.5], [0.25], CropRecipe(**args))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_views_shapes_and_dtypes_match_the_per_sample_path(channels):
    images = torch.randint(0, 256, (5, channels, 20, 24), dtype=torch.uint8)
    views = batch_crop(channels)(images)
    per_sample = MultiCrop(
        channels, [0.5], [0.25], CropRecipe(global_size=16, local_size=8, n_local=3)
    )
    reference = per_sample(images[0])
    assert len(views) == batch_crop(channels).n_views == per_sample.n_views == 5
    assert [tuple(v.shape[1:]) for v in views] == [tuple(r.shape) for r in reference]
    assert all(v.shape[0] == 5 and v.dtype == torch.float32 for v in views)


def test_normalisation_and_solarisation_give_the_hand_computed_values():
    # Constant images: every crop is the same constant, so the values are known exactly.
    # Solarisation (second global view, p=1) maps 200 -> 255 - 200 = 55; 100 stays.
    images = torch.stack([torch.full((3, 12, 12), v, dtype=torch.uint8) for v in (200, 100)])
    crop = batch_crop(3, **(OFF | dict(solarize=1.0)))
    g1, g2, *local = crop(images)
    expected = {200: (200 / 255 - 0.5) / 0.25, 100: (100 / 255 - 0.5) / 0.25}
    solarised = {200: (55 / 255 - 0.5) / 0.25, 100: expected[100]}
    for i, value in enumerate((200, 100)):
        torch.testing.assert_close(g1[i], torch.full_like(g1[i], expected[value]))
        torch.testing.assert_close(
            g2[i], torch.full_like(g2[i], solarised[value]), atol=1e-5, rtol=0
        )
        for v in local:
            torch.testing.assert_close(v[i], torch.full_like(v[i], expected[value]))


def test_four_channels_normalise_flip_and_share_one_brightness_factor():
    # Constant channels 40, 80, 120, 160 normalised with four means and stds.
    x = torch.tensor([40.0, 80.0, 120.0, 160.0])
    images = x.to(torch.uint8).view(1, 4, 1, 1).expand(2, 4, 12, 12).contiguous()
    mean, std = [0.0, 0.5, 0.25, 1.0], [1.0, 0.5, 0.25, 0.5]
    still = dict(global_size=12, local_size=6, n_local=1, global_scale=(1.0, 1.0))
    views = BatchMultiCrop(4, mean, std, CropRecipe(**(still | OFF)))(images)
    expected = (x / 255 - torch.tensor(mean)) / torch.tensor(std)
    for v in views:
        torch.testing.assert_close(v, expected.view(1, 4, 1, 1).expand_as(v))
    # A horizontal flip (p=1) of a ramp reverses every channel's columns.
    ramp = (torch.arange(12) * 20).to(torch.uint8).expand(2, 4, 12, 12).contiguous()
    g1 = BatchMultiCrop(4, [0.0], [1.0], CropRecipe(**(still | OFF | dict(hflip=1.0))))(ramp)[0]
    torch.testing.assert_close(g1, ramp.flip(-1).float() / 255)
    # Brightness only (kornia multiplies by one factor b per image): the ratio to the input
    # is the same in all four channels, and differs between the two images.
    jitter = OFF | dict(color_jitter=1.0, brightness=0.4, contrast=0.0)
    torch.manual_seed(0)
    g1 = BatchMultiCrop(4, [0.0], [1.0], CropRecipe(**(still | jitter)))(images)[
        0
    ]  # (2, 4, 12, 12)
    ratio = g1[:, :, 0, 0] / (x / 255)  # (2, 4)
    torch.testing.assert_close(ratio, ratio[:, :1].expand(2, 4))
    assert ((ratio[:, 0] - 1).abs() > 1e-3).all() and (ratio - 1).abs().max() <= 0.4 + 1e-5
    assert (ratio[0, 0] - ratio[1, 0]).abs() > 1e-4


def test_grayscale_makes_the_channels_equal():
    images = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    views = batch_crop(3, **(OFF | dict(grayscale=1.0)))(images)
    for v in views:
        torch.testing.assert_close(v[:, 0], v[:, 1])
        torch.testing.assert_close(v[:, 1], v[:, 2])


def test_each_image_gets_its_own_crop_and_a_seed_fixes_them():
    crop = batch_crop(3, **OFF)
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    images = image.expand(4, -1, -1, -1).contiguous()  # four copies of one image
    torch.manual_seed(0)
    first = crop(images)
    torch.manual_seed(0)
    again = crop(images)
    torch.manual_seed(1)
    other = crop(images)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[2], other[2])
    # Same image, different crops: no two copies share a local view.
    local = first[2].flatten(1)
    assert all(not torch.equal(local[i], local[j]) for i in range(4) for j in range(i))


def test_crops_come_from_inside_the_image():
    # A bright square in a dark image: a full-scale crop keeps ~its share of bright pixels.
    images = torch.zeros(64, 1, 32, 32, dtype=torch.uint8)
    images[:, :, 8:24, 8:24] = 255  # a quarter of the area
    crop = BatchMultiCrop(
        1,
        [0.0],
        [1.0],
        CropRecipe(global_size=32, local_size=8, n_local=0, **OFF, global_scale=(1.0, 1.0)),
    )
    g1 = crop(images)[0]
    assert g1.min() >= 0 and g1.max() <= 1
    assert abs(g1.mean().item() - 0.25) < 0.05


def test_bad_inputs_raise():
    crop = batch_crop(3)
    with pytest.raises(ValueError, match="uint8"):
        crop(torch.rand(2, 3, 12, 12))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        crop(torch.zeros(2, 1, 12, 12, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"data.mean has 2 values .* give 1 .* or 3"):
        BatchMultiCrop(3, [0.5, 0.5], [0.5, 0.5])


def test_backend_is_validated_and_label_guidance_stays_per_sample():
    with pytest.raises(ConfigCompositionException) as err:  # a closed choice of the schema
        make_config("+experiment=smoke", "augment.backend=gpu")
    assert one_line(err.value) == "augment.backend=gpu: valid choices: per_sample, batched"
    dataset = build_dataset(make_config("+experiment=smoke").data, "train")
    cfg = make_config("augment=label_guided", "augment.backend=batched")
    with pytest.raises(ValueError, match="augment.backend=per_sample"):
        build_augment(cfg.augment, dataset, cfg.data.mean, cfg.data.std)

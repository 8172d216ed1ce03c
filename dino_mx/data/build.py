"""Builders: the ``data`` config group to datasets (converted to ``data.channels``) and the
``augment`` group to the crop transform."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset

from dino_mx.config import AugmentConfig, Backend, DataConfig, DataFormat
from dino_mx.data.bad_image import check_on_bad_image
from dino_mx.data.batch_multicrop import BatchMultiCrop, RawImage, build_batch_multicrop
from dino_mx.data.channels import ConvertChannels, check_channels
from dino_mx.data.coco import load_coco
from dino_mx.data.imagefolder import ImageFolderDataset
from dino_mx.data.label_guided import LabelGuidedCrop, build_label_guided
from dino_mx.data.medmnist import bundled_pneumoniamnist_path, medmnist_info, medmnist_path
from dino_mx.data.multicrop import MultiCrop, build_multicrop
from dino_mx.data.npz import NpzImageDataset
from dino_mx.data.roi import load_roi_npz

# medmnist / npz: MedMNIST layout; imagefolder: class sub-folders; roi_npz / coco: images with
# boxes (dino_mx/data/roi.py, dino_mx/data/coco.py), needed by augment=label_guided.
FORMATS = tuple(DataFormat)
# per_sample: each image's crops in the loader workers; batched: the loader collates the images
# and the trainer crops the whole batch on its device (dino_mx/data/batch_multicrop.py).
BACKENDS = tuple(Backend)


def resolve_data_path(cfg: DataConfig) -> Path:
    """Where the data of ``cfg`` lives; raises ``FileNotFoundError`` naming the expected path."""
    if cfg.format not in FORMATS:
        raise ValueError(f"unknown data.format '{cfg.format}'; valid choices: {', '.join(FORMATS)}")
    if cfg.format == "medmnist":
        if not cfg.flag:
            raise ValueError("data.format=medmnist needs data.flag (e.g. pathmnist)")
        if cfg.root is None:
            if (cfg.flag, cfg.size) != ("pneumoniamnist", 28):
                raise ValueError(
                    f"only pneumoniamnist at 28 px is bundled; set data.root to the folder "
                    f"holding {cfg.flag} files"
                )
            return bundled_pneumoniamnist_path()
        return medmnist_path(cfg.root, cfg.flag, cfg.size)
    if cfg.root is None or cfg.file is None:
        raise ValueError(
            f"dataset '{cfg.name}' (format {cfg.format}) needs data.root, the folder holding "
            f"{cfg.file or 'the data'}, e.g. data.root=../shared/data"
        )
    path = Path(cfg.root).expanduser() / cfg.file
    if not path.exists():
        kind = {
            "imagefolder": "folder of class sub-folders",
            "coco": "folder of images and COCO JSON",
        }.get(cfg.format, "file")
        raise FileNotFoundError(
            f"dataset '{cfg.name}' not found: expected the {kind} {path.resolve()}. Put it there "
            f"or point data.root (and data.file) at it."
        )
    return path


def build_dataset(cfg: DataConfig, split: str = "train") -> Dataset:
    """The raw dataset of ``split``, with ``channels``/``num_classes``/``labels`` attributes.

    For ``data.format=medmnist`` the class count and the ``task`` attribute come from
    ``medmnist.INFO[data.flag]``, so a split lacking the last class still counts it; an
    ``npz`` file's dataset infers both from its labels. For an image folder,
    ``{folder}/{split}/`` is used when it exists, else the folder itself holds the training
    set. ``roi_npz`` and ``coco`` give a :class:`~dino_mx.data.RoiDataset`, which also has
    ``regions(index)``. ``data.channels`` (null or any C >= 1) converts where a rule exists
    (grey -> C repeats, RGB -> grey by luma: :mod:`dino_mx.data.channels`).
    ``data.on_bad_image`` (raise | skip) applies to the image files of ``imagefolder`` and
    ``coco`` (:mod:`dino_mx.data.bad_image`); the arrays of an ``.npz`` are checked when opened.

    Raises:
        ValueError: ``data.channels`` < 1, a conversion without a rule (e.g. 4 -> 3), an
            unknown ``data.on_bad_image``, or a corrupt or malformed ``.npz`` (named).
    """
    if cfg.channels is not None:
        check_channels(cfg.channels)
    # Configs saved before the key existed (an old run evaluated) read as the default.
    on_bad_image = check_on_bad_image(cfg.get("on_bad_image", "raise"))
    path = resolve_data_path(cfg)
    if cfg.format == "imagefolder":
        folder = path / split if (path / split).is_dir() else path
        if folder == path and split != "train":
            raise FileNotFoundError(f"image folder {path} has no '{split}' sub-folder")
        dataset: Dataset = ImageFolderDataset(
            folder, channels=cfg.channels, on_bad_image=on_bad_image
        )
    elif cfg.format == "coco":
        if cfg.channels not in (None, 1, 3):  # photographs: grey or RGB
            raise ValueError(
                f"data.format=coco reads photographs: data.channels must be null, 1 or 3, "
                f"got {cfg.channels}"
            )
        dataset = load_coco(path, split, channels=cfg.channels, on_bad_image=on_bad_image)
    else:
        if cfg.format == "roi_npz":
            dataset = load_roi_npz(path, split, cfg.get("roi_names"))
        elif cfg.format == "medmnist":
            info = medmnist_info(cfg.flag)
            dataset = NpzImageDataset(
                path, split, num_classes=info["num_classes"], task=info["task"]
            )
        else:
            dataset = NpzImageDataset(path, split)
        if cfg.channels is not None and cfg.channels != dataset.channels:
            dataset.transform = ConvertChannels(cfg.channels, source=dataset.channels)
            dataset.channels = cfg.channels
    return dataset


def build_augment(
    cfg: AugmentConfig, dataset: Dataset, mean: Sequence[float], std: Sequence[float]
) -> MultiCrop | LabelGuidedCrop | RawImage:
    """Builder: the ``augment`` group to the per-sample training transform of ``dataset``.

    ``augment.name`` starting with ``label_guided`` selects :class:`LabelGuidedCrop`, which needs
    a dataset with regions (``data.format`` roi_npz or coco); any other name is DINO's
    multi-crop. With ``augment.backend=batched`` the per-sample transform only passes the image
    on (:class:`RawImage`) and :func:`build_batch_augment` does the cropping.

    Raises:
        ValueError: An unknown backend, label guidance on data without regions or with the
            batched backend, or an unknown ``roi_classes`` name.
    """
    channels = dataset.channels  # type: ignore[attr-defined]
    if cfg.backend not in BACKENDS:
        raise ValueError(
            f"unknown augment.backend '{cfg.backend}'; valid choices: {', '.join(BACKENDS)}"
        )
    label_guided = cfg.name.startswith("label_guided")
    if not label_guided:
        if cfg.get("roi_crops"):  # a key of augment=label_guided only, or of an old config
            raise ValueError(f"augment.roi_crops needs augment=label_guided, not '{cfg.name}'")
        return RawImage() if cfg.backend == "batched" else build_multicrop(cfg, channels, mean, std)
    if cfg.backend == "batched":
        raise ValueError(
            "augment=label_guided crops around each image's own regions, one image at a time: "
            "use augment.backend=per_sample"
        )
    if not hasattr(dataset, "regions"):
        raise ValueError(
            f"augment={cfg.name} needs regions of interest: data with data.format roi_npz or "
            f"coco (e.g. data=bccd_roi), not {type(dataset).__name__}"
        )
    classes = dataset.class_ids(list(cfg.roi_classes)) if cfg.roi_classes else None
    return build_label_guided(cfg, channels, mean, std, classes)


def build_batch_augment(
    cfg: AugmentConfig, channels: int, mean: Sequence[float], std: Sequence[float]
) -> BatchMultiCrop | None:
    """Builder: the trainer's batch transform, or None when the loader crops per sample."""
    if cfg.backend != "batched":
        return None
    return build_batch_multicrop(cfg, channels, mean, std)

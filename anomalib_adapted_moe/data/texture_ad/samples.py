"""anomalib's samples table for Texture AD, with the subclass of every image."""

from __future__ import annotations

from collections.abc import Sequence

from pandas import DataFrame

from anomalib_adapted_moe.data.texture_ad.layout import NORMAL_LABEL
from anomalib_adapted_moe.data.texture_ad.scan import CategoryLayout

SAMPLE_COLUMNS = ["path", "split", "label", "image_path", "mask_path", "label_index", "subclass", "subclass_id"]


def make_texture_ad_samples(
    layout: CategoryLayout,
    train: Sequence[str],
    test: Sequence[str],
    split: str | None = None,
) -> DataFrame:
    """Build anomalib's samples table plus ``subclass`` and ``subclass_id`` (-1: never trained on).

    ``subclass_id`` indexes the sorted training subclasses, for both splits, so a
    seen subclass carries the same id at train and test time.
    """
    ids = {name: i for i, name in enumerate(sorted(train))}
    rows = []
    path = str(layout.root)
    for name in sorted(train):
        rows += [
            (path, "train", NORMAL_LABEL, str(image), "", 0, name, ids[name])
            for image in layout.subclasses[name].train_images
        ]
    for name in sorted(test):
        sub = layout.subclasses[name]
        for image, label in sub.test_images:
            abnormal = label != NORMAL_LABEL
            mask = str(sub.masks.get(image, "")) if abnormal else ""
            rows.append((path, "test", label, str(image), mask, int(abnormal), name, ids.get(name, -1)))
    samples = DataFrame(rows, columns=SAMPLE_COLUMNS)
    samples["label_index"] = samples["label_index"].astype(int)
    samples["subclass_id"] = samples["subclass_id"].astype(int)
    has_masks = bool((samples["mask_path"] != "").any())
    if split is not None:
        samples = samples[samples.split == split].reset_index(drop=True)
    samples = samples.sort_values(by="image_path", ignore_index=True)
    samples.attrs["task"] = "segmentation" if has_masks else "classification"
    return samples

"""Validation split of Texture AD from the training images, never from the test set.

Each training subclass gives a share of its images to validation (keeping at
least one for training); every second held-out image gets a synthetic anomaly
from anomalib's Perlin generator, so thresholds are fitted on data with both
labels without touching the test set.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from anomalib.data.utils import LabelName, Split, ValSplitMode
from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator
from pandas import DataFrame, Series
from PIL import Image

# submodules, not the package: the package's datamodule imports this module
from anomalib_adapted_moe.data.texture_ad.files import read_image_tensor

if TYPE_CHECKING:
    from anomalib_adapted_moe.data.texture_ad.datamodule import TextureADDataset

logger = logging.getLogger(__name__)

#: anomalib's validation modes that take test images: nothing fitted on them may be deployed or reported as held out
TEST_IMAGE_MODES = frozenset({ValSplitMode.FROM_TEST, ValSplitMode.SAME_AS_TEST})


def validates_on_test_images(datamodule: object) -> str | None:
    """The datamodule's ``val_split_mode`` when its validation split takes test images, else ``None``."""
    mode = getattr(datamodule, "val_split_mode", None)
    return ValSplitMode(mode).value if mode is not None and ValSplitMode(mode) in TEST_IMAGE_MODES else None


#: the share of the training images held out for validation from which training loses enough to say so
#: (anomalib's default val_split_ratio for Folder and MVTecAD is 0.5; TextureAD's is 0.2)
LARGE_HELD_OUT_SHARE = 0.5


def large_held_out_share(datamodule: object) -> str | None:
    """A warning when the validation split takes half of the normal training images or more (``from_train``,
    ``synthetic``), else ``None``: anomalib's Folder and MVTecAD default to half, so a model validated honestly
    trains on half of the images it was given."""
    mode, ratio = getattr(datamodule, "val_split_mode", None), getattr(datamodule, "val_split_ratio", None)
    if mode is None or ratio is None or ValSplitMode(mode) not in (ValSplitMode.FROM_TRAIN, ValSplitMode.SYNTHETIC):
        return None
    held_out, kept = len(getattr(datamodule, "val_data", ())), len(getattr(datamodule, "train_data", ()))
    if ratio < LARGE_HELD_OUT_SHARE or held_out == 0:
        return None
    return (
        f"val_split_ratio={ratio:g} holds out {held_out} of the {held_out + kept} training images for validation "
        f"(val_split_mode={ValSplitMode(mode).value!r}), so the model trains on {kept}. Fix: --data.val_split_ratio "
        "0.2 (val_split_ratio=0.2 from Python) holds out one in five, as TextureAD does."
    )


def split_train_per_subclass(
    dataset: TextureADDataset,
    ratio: float,
    seed: int | None = None,
) -> tuple[TextureADDataset, TextureADDataset]:
    """Hold out ``ratio`` of every training subclass's images, never all of them.

    anomalib's ``random_split`` ignores subclasses and can strip a small subclass
    of every training image (its expert would then never train). Here each
    subclass with ``n >= 2`` images gives ``min(n - 1, max(1, round(n * ratio)))``
    to validation; a subclass with one image keeps it for training.
    ``seed=None`` follows torch's global RNG (so ``seed_everything`` applies).
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    train_idx: list[int] = []
    val_idx: list[int] = []
    for name, group in dataset.samples.groupby("subclass", sort=True):
        indices = group.index.to_numpy()
        n = len(indices)
        n_val = min(n - 1, max(1, round(n * ratio))) if n >= 2 else 0
        if n_val == 0:
            logger.warning("Subclass %r has %d training image(s); none is held out for validation.", name, n)
        elif n - n_val == 1:  # 2 images (or a large ratio): its expert trains on one, which said nothing
            logger.warning(
                "Subclass %r has %d training images; %d held out for validation leave its expert one to train on. "
                "Fix: give it more training images (ten or more make an expert worth the name).",
                name,
                n,
                n_val,
            )
        order = torch.randperm(n, generator=generator).numpy()
        val_idx += indices[order[:n_val]].tolist()
        train_idx += indices[order[n_val:]].tolist()
    if not val_idx:
        logger.warning("The validation split is empty: no training subclass has two images or more.")
    return dataset.subsample(train_idx), dataset.subsample(val_idx)


class _TempDir:
    """A folder deleted when the last dataset referring to it is collected (or at exit).

    Copies share it (``subsample`` and ``+`` deep-copy datasets); an unpickled copy,
    e.g. in a spawned dataloader worker, never deletes it.
    """

    def __init__(self, path: Path, owner: bool = True) -> None:
        self.path = path
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(path), ignore_errors=True) if owner else None

    def __copy__(self) -> _TempDir:
        return self

    def __deepcopy__(self, _memo: dict) -> _TempDir:
        return self

    def __reduce__(self) -> tuple:
        return (_TempDir, (self.path, False))


def make_synthetic_validation(normal: TextureADDataset, seed: int | None = None) -> TextureADDataset:
    """Turn about half of ``normal`` into synthetic anomalies, keeping every image's subclass.

    Same anomalies as anomalib's ``ValSplitMode.SYNTHETIC`` (its
    ``PerlinAnomalyGenerator`` with ``probability=1.0, blend_factor=(0.01, 0.2)``,
    50/50 normal/anomalous), but anomalib's ``SyntheticAnomalyDataset`` drops the
    ``subclass`` columns and yields plain ``ImageItem`` batches, so the images are
    made here. Images are taken subclass by subclass in random order and every
    second one becomes anomalous (the turn carries over between subclasses), so
    about half of each subclass and of the whole set is anomalous and a subclass
    with two validation images or more gets both kinds. An anomaly whose Perlin
    mask comes out empty stays a normal image. The files go to a temporary folder
    removed with the dataset.
    """
    samples = normal.samples.copy()
    val = normal.subsample(list(range(len(samples))))
    if samples.empty:
        val.samples.attrs["task"] = "segmentation"
        return val
    folder = Path(tempfile.mkdtemp(prefix="texture_ad_val_", dir=_synthetic_val_base()))
    val._synthetic_dir = _TempDir(folder)  # keeps the folder alive as long as the dataset

    generator = PerlinAnomalyGenerator(anomaly_source_path=None, probability=1.0, blend_factor=(0.01, 0.2))
    rows = []
    anomalous_turn = False
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for _, group in samples.groupby("subclass", sort=True):
            order = torch.randperm(len(group)).tolist()
            for position in order:
                row = group.iloc[position].copy()
                row["split"] = Split.VAL.value
                if anomalous_turn:
                    row = _make_anomalous(row, generator, folder, len(rows))
                rows.append(row)
                anomalous_turn = not anomalous_turn
    frame = DataFrame(rows).reset_index(drop=True)
    frame["label_index"] = frame["label_index"].astype(int)
    frame["subclass_id"] = frame["subclass_id"].astype(int)
    val.samples = frame
    val.samples.attrs["task"] = "segmentation"
    return val


def _synthetic_val_base() -> Path:
    base = Path(tempfile.gettempdir()) / "anomalib_adapted_moe" / "synthetic_val"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _make_anomalous(row: Series, generator: PerlinAnomalyGenerator, folder: Path, number: int) -> Series:
    """Write a perturbed copy of ``row``'s image and its mask; keep it normal if the mask came out empty."""
    image = read_image_tensor(row.image_path)
    perturbed, mask = generator(image)
    mask = mask.squeeze() > 0.5
    if not mask.any():
        return row
    stem = f"{number:05d}_{Path(row.image_path).stem}"
    image_path = folder / f"{stem}.png"
    mask_path = folder / f"{stem}_mask.png"
    pixels = (perturbed.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(image_path)
    Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(mask_path)
    row["image_path"], row["mask_path"] = str(image_path), str(mask_path)
    row["label"], row["label_index"] = "synthetic", int(LabelName.ABNORMAL)
    return row


# --------------------------------------------------------------------------- datamodule

"""Texture AD dataset and datamodule, with the subclass of every image.

Texture AD (cloth, wafer, metal) splits each category into many *subclasses*,
and its test set contains subclasses never seen in training. Adapted-MoE trains
a router on the subclass, so every item and batch carries ``subclass_id`` (index
into the sorted training subclasses, ``-1`` for an unseen one) and
``subclass_name``.

The layout rules live in :mod:`anomalib_adapted_moe.data.texture_ad_layout`.
Validate a downloaded copy with::

    python -m anomalib_adapted_moe.data.texture_ad --check ROOT [--category cloth]

Data source: the Hugging Face dataset ``texture-ad/Texture-AD-Benchmark``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from anomalib import TaskType
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, Split, TestSplitMode, ValSplitMode
from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator
from anomalib.utils.path import resolve_dataset_root
from pandas import DataFrame, Series
from PIL import Image
from torchvision.transforms.v2 import Transform
from torchvision.tv_tensors import Mask

from anomalib_adapted_moe.data.subclass_batch import SubclassImageBatch, SubclassImageItem
from anomalib_adapted_moe.data.texture_ad_layout import (
    LAYOUT_TEXT,
    CategoryLayout,
    LayoutProblem,
    TextureADLayoutError,
    TextureADNotFoundError,
    check_category,
    find_category_dir,
    make_texture_ad_samples,
    mask_size_problem,
    not_found_message,
    raise_first,
    read_binary_mask,
    read_image_tensor,
    resolve_subclasses,
    scan_category,
)

logger = logging.getLogger(__name__)

# `python -m anomalib_adapted_moe.data.texture_ad` imports this module through the package before running
# it as __main__; runpy then warns about it. Harmless here (main() only reads files), so silence that one line.
warnings.filterwarnings(
    "ignore", message=r".*anomalib_adapted_moe\.data\.texture_ad.* found in sys\.modules", category=RuntimeWarning
)

DEFAULT_ROOT = "./datasets/TextureAD"
_logged_warnings: set[str] = set()


def _log_layout_warnings(layout: CategoryLayout) -> None:
    """Log ignored files once per process (train and test datasets scan the same folder)."""
    lines = list(layout.warnings)
    for sub in layout.subclasses.values():
        lines += sub.warnings
    for line in lines:
        if line not in _logged_warnings:
            _logged_warnings.add(line)
            logger.warning(line)


class TextureADDataset(AnomalibDataset):
    """Texture AD images of one category, one split, with their subclass.

    Subclass selection (each list independently): the explicit argument, else
    ``<root>/<category>/split.json`` (``seen`` train and test, ``unseen`` test
    only), else every subclass with a ``train/good`` folder trains and every
    subclass tests. ``subclass_id`` indexes :attr:`train_subclasses` (sorted) and
    is ``-1`` for a subclass that is not trained on, which only the test split holds.

    Args:
        root (Path | str | None): Folder holding the category folders.
            Defaults to ``"./datasets/TextureAD"``.
        category (str): ``"cloth"``, ``"wafer"``, ``"metal"`` or any category folder
            name (a case-only difference such as ``Cloth`` is accepted).
        augmentations (Transform | None): Augmentations applied to image and mask.
        split (str | Split | None): ``"train"``, ``"test"`` or ``None`` for both.
        train_subclasses (list[str] | None): Subclasses to train on.
        test_subclasses (list[str] | None): Subclasses to test on.

    Raises:
        FileNotFoundError: If ``root`` or the category folder is missing; the
            message says where to download Texture AD and how to lay it out.
        TextureADLayoutError: On a missing or orphan mask, an unknown subclass
            name or an empty training set (the message names the file and the fix).

    Example:
        >>> from anomalib_adapted_moe.data import TextureADDataset
        >>> dataset = TextureADDataset(root="./datasets/TextureAD", category="cloth", split="test")
        >>> item = dataset[0]
        >>> item.subclass_id, item.subclass_name  # -1 for a subclass never trained on
        (tensor(-1), 'fabric_13')
    """

    def __init__(
        self,
        root: Path | str | None = DEFAULT_ROOT,
        category: str = "cloth",
        augmentations: Transform | None = None,
        split: str | Split | None = None,
        train_subclasses: Sequence[str] | None = None,
        test_subclasses: Sequence[str] | None = None,
    ) -> None:
        super().__init__(augmentations=augmentations)
        self.root = Path(resolve_dataset_root(root, "TextureAD"))
        self.root_category = find_category_dir(self.root, category)
        self.category = category
        self.split = split

        layout = scan_category(self.root_category)
        _log_layout_warnings(layout)
        train, test, problems = resolve_subclasses(layout, train_subclasses, test_subclasses)
        raise_first(problems)
        self.train_subclasses: list[str] = train
        self.test_subclasses: list[str] = test
        self.unseen_subclasses: list[str] = sorted(set(test) - set(train))

        split_value = split.value if isinstance(split, Split) else split
        self.samples = make_texture_ad_samples(layout, train, test, split_value)

    def __getitem__(self, index: int) -> SubclassImageItem:
        """Load one item; unreadable files and mask/image size mismatches raise naming the file.

        Masks are read by :func:`read_binary_mask` (any non-zero pixel of a grey,
        RGB, palette or 16-bit mask is defect), so the mask is always {0, 1}.
        """
        row = self.samples.iloc[index]
        image_path, mask_path, label_index = row.image_path, row.mask_path, int(row.label_index)
        image = read_image_tensor(image_path)

        gt_mask = None
        if self.task == TaskType.SEGMENTATION:
            if label_index == LabelName.NORMAL:
                gt_mask = Mask(torch.zeros(image.shape[-2:], dtype=torch.uint8))
            elif label_index == LabelName.ABNORMAL:
                mask = read_binary_mask(mask_path)
                height, width = image.shape[-2:]
                problem = mask_size_problem(image_path, (width, height), mask_path, (mask.shape[1], mask.shape[0]))
                if problem is not None:
                    raise problem.to_error()
                gt_mask = Mask(torch.from_numpy(mask.astype(np.uint8)))

        if self.augmentations:
            if gt_mask is None:
                image = self.augmentations(image)
            else:
                image, gt_mask = self.augmentations(image, gt_mask)

        return SubclassImageItem(
            image=image,
            gt_mask=gt_mask,
            gt_label=None if label_index == LabelName.UNKNOWN else torch.tensor(label_index),
            image_path=image_path,
            mask_path=mask_path,
            subclass_id=torch.tensor(int(row.subclass_id), dtype=torch.long),
            subclass_name=str(row.subclass),
        )

    @property
    def collate_fn(self) -> Callable:
        """Collate into :class:`SubclassImageBatch`, which keeps ``subclass_id``/``subclass_name``."""
        return SubclassImageBatch.collate


# --------------------------------------------------------------------------- validation split


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


class TextureAD(AnomalibDataModule):
    """Texture AD datamodule: batches carry ``subclass_id`` and ``subclass_name``.

    Subclasses: ``train_subclasses``/``test_subclasses`` if given, else
    ``<root>/<category>/split.json`` (``seen``: train and test; ``unseen``: test
    only), else every subclass with ``train/good`` trains and every subclass
    tests. After :meth:`setup`, :attr:`train_subclasses` is the sorted list that
    ``subclass_id`` indexes (``-1``: not trained on; such images are in the test
    split only), so a model reads ``trainer.datamodule.train_subclasses``.

    Validation never uses test data by default (thresholds must not be chosen on
    the test set): ``val_split_mode="synthetic"`` holds out ``val_split_ratio`` of
    the training images *of every training subclass* (each keeps at least one
    training image) and turns about half of them into anomalies with anomalib's
    Perlin generator, keeping their subclass (see :func:`make_synthetic_validation`
    for why anomalib's own synthetic mode is not used as is). ``"from_train"``
    gives the same per-subclass hold-out without anomalies. ``"from_test"`` and
    ``"same_as_test"`` work but select on test data (a warning says so);
    ``"from_dir"`` is refused (Texture AD has no validation folder).

    Args:
        root (Path | str | None): Folder holding the category folders
            (``root/<category>/<subclass>/...``). Defaults to ``"./datasets/TextureAD"``.
        category (str): ``"cloth"``, ``"wafer"``, ``"metal"`` or any category folder name.
            Defaults to ``"cloth"``.
        train_batch_size (int): Training batch size. Defaults to ``32``.
        eval_batch_size (int): Validation and test batch size. Defaults to ``32``.
        num_workers (int): Dataloader workers. Defaults to ``2``.
        train_augmentations (Transform | None): Training augmentations.
        val_augmentations (Transform | None): Validation augmentations.
        test_augmentations (Transform | None): Test augmentations.
        augmentations (Transform | None): Augmentations for any stage without its own.
        test_split_mode (TestSplitMode | str): How to build the test set. Defaults to ``"from_dir"``.
        test_split_ratio (float): Fraction of training images used as normal test
            images if the test set has none. Defaults to ``0.2``.
        val_split_mode (ValSplitMode | str): How to build the validation set. Defaults to ``"synthetic"``.
        val_split_ratio (float): Fraction of each subclass's training images held out
            for validation. Defaults to ``0.2``.
        seed (int | None): Seed of the validation split and synthetic anomalies;
            ``None`` follows torch's global RNG. Defaults to ``None``.
        train_subclasses (list[str] | None): Subclasses to train on. Defaults to ``None``.
        test_subclasses (list[str] | None): Subclasses to test on. Defaults to ``None``.

    Example:
        >>> from anomalib_adapted_moe.data import TextureAD
        >>> datamodule = TextureAD(root="./datasets/TextureAD", category="cloth")
        >>> datamodule.setup()
        >>> batch = next(iter(datamodule.train_dataloader()))
        >>> batch.subclass_id  # indexes datamodule.train_subclasses
        tensor([3, 0, 5, ...])

        From the command line::

            anomalib train --model Padim --data TextureAD \\
                --data.root ./datasets/TextureAD --data.category cloth
    """

    def __init__(
        self,
        root: Path | str | None = DEFAULT_ROOT,
        category: str = "cloth",
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 2,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        test_split_ratio: float = 0.2,
        val_split_mode: ValSplitMode | str = ValSplitMode.SYNTHETIC,
        val_split_ratio: float = 0.2,
        seed: int | None = None,
        train_subclasses: list[str] | None = None,
        test_subclasses: list[str] | None = None,
    ) -> None:
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            test_split_mode=test_split_mode,
            test_split_ratio=test_split_ratio,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            seed=seed,
        )
        if self.val_split_mode == ValSplitMode.FROM_DIR:
            msg = (
                "TextureAD has no validation folder, so val_split_mode='from_dir' cannot work; "
                "use 'synthetic' (default), 'from_train', or 'none'."
            )
            raise ValueError(msg)
        for name, value in (("train_subclasses", train_subclasses), ("test_subclasses", test_subclasses)):
            if isinstance(value, str):
                msg = f"{name} must be a list of subclass names, got the string {value!r}; use [{value!r}]."
                raise TypeError(msg)
        self.root = Path(resolve_dataset_root(root, "TextureAD"))
        self.category = category
        self._requested_train_subclasses = list(train_subclasses) if train_subclasses is not None else None
        self._requested_test_subclasses = list(test_subclasses) if test_subclasses is not None else None
        # The resolved, sorted lists after setup; until then what was asked for (None: decided at setup).
        self.train_subclasses: list[str] | None = (
            sorted(set(train_subclasses)) if train_subclasses is not None else None
        )
        self.test_subclasses: list[str] | None = sorted(set(test_subclasses)) if test_subclasses is not None else None
        self.unseen_subclasses: list[str] | None = None

    @property
    def name(self) -> str:
        """The dataset folder's name (results go under ``<model>/<name>/<category>``).

        anomalib's visualizer looks for this name, then the category, in each image
        path and keeps the folders below them (``<subclass>/test/<defect>``), so the
        test images of different subclasses, which share file names, do not
        overwrite each other's visualisations.
        """
        return self.root.name

    def prepare_data(self) -> None:
        """Fail early, with download instructions, if the category folder is missing."""
        find_category_dir(self.root, self.category)

    def _make_dataset(self, split: Split) -> TextureADDataset:
        return TextureADDataset(
            root=self.root,
            category=self.category,
            split=split,
            train_subclasses=self._requested_train_subclasses,
            test_subclasses=self._requested_test_subclasses,
        )

    def _setup(self, _stage: str | None = None) -> None:
        """Build the train and test datasets and publish the resolved subclass lists."""
        self.train_data = self._make_dataset(Split.TRAIN)
        self.test_data = self._make_dataset(Split.TEST)
        self.train_subclasses = self.train_data.train_subclasses
        self.test_subclasses = self.train_data.test_subclasses
        self.unseen_subclasses = self.train_data.unseen_subclasses
        logger.info(
            "TextureAD %s at %s: %d training subclasses %s, %d test-only subclasses %s; %d train, %d test images.",
            self.category,
            self.train_data.root_category,
            len(self.train_subclasses),
            self.train_subclasses,
            len(self.unseen_subclasses),
            self.unseen_subclasses,
            len(self.train_data),
            len(self.test_data),
        )

    def _create_val_split(self) -> None:
        """Per-subclass hold-out for ``synthetic``/``from_train``; anomalib's own code otherwise."""
        if self.val_split_mode == ValSplitMode.SYNTHETIC:
            self.train_data, normal_val = split_train_per_subclass(self.train_data, self.val_split_ratio, self.seed)
            self.val_data = make_synthetic_validation(normal_val, self.seed)
        elif self.val_split_mode == ValSplitMode.FROM_TRAIN:
            self.train_data, self.val_data = split_train_per_subclass(self.train_data, self.val_split_ratio, self.seed)
        else:
            if self.val_split_mode in {ValSplitMode.FROM_TEST, ValSplitMode.SAME_AS_TEST}:
                logger.warning(
                    "val_split_mode=%r validates on test images: thresholds and checkpoints are then chosen on "
                    "test data. Use 'synthetic' (default) for an honest test score.",
                    self.val_split_mode.value,
                )
            super()._create_val_split()


# --------------------------------------------------------------------------- --check


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _category_dirs(root: Path, category: str | None) -> tuple[list[Path], list[LayoutProblem]]:
    if category is not None:
        return [find_category_dir(root, category)], []
    if not root.is_dir():
        raise TextureADNotFoundError(not_found_message(root))
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    problems = []
    looks_like_category = [p for p in dirs if (p / "train").is_dir() or (p / "test").is_dir()]
    if looks_like_category:
        problems.append(
            LayoutProblem(
                TextureADLayoutError,
                root,
                f"looks like a category folder (its subfolders {[p.name for p in looks_like_category]} "
                "hold train/ or test/), not the dataset root.",
                f"pass its parent as ROOT and add --category {root.name}.",
            )
        )
        dirs = []
    elif not dirs:
        problems.append(
            LayoutProblem(
                TextureADLayoutError,
                root,
                "holds no category folder.",
                "extract the Texture AD archives here (one folder per category).",
            )
        )
    return dirs, problems


def run_check(root: Path, category: str | None = None, workers: int = 4) -> int:
    """Report every layout problem under ``root``; return the exit code (0 clean, 1 problems, 2 not found)."""
    try:
        categories, problems = _category_dirs(root, category)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    warnings: list[str] = []
    subclasses = images = masks = 0
    for category_dir in categories:
        print(f"Checking {category_dir} ...", file=sys.stderr)
        report = check_category(category_dir, workers=workers)
        problems += report.problems
        warnings += report.warnings
        subclasses += report.subclasses
        images += report.images
        masks += report.masks
    for warning in warnings:
        print(f"WARNING {warning}")
    for problem in problems:
        print(f"PROBLEM {problem}")
    counts = (
        f"{_plural(len(categories), 'category', 'categories')}, {_plural(subclasses, 'subclass', 'subclasses')}, "
        f"{_plural(images, 'image')}"
    )
    if problems:
        print(f"{_plural(len(problems), 'problem')} found ({counts}, {_plural(masks, 'mask')}).")
        print(f"Expected layout:\n{LAYOUT_TEXT}")
        return 1
    print(f"{counts}, no problems ({_plural(masks, 'mask')} checked).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m anomalib_adapted_moe.data.texture_ad``."""
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_adapted_moe.data.texture_ad",
        description="Validate a downloaded copy of Texture AD: lists every layout problem with its file and fix.",
    )
    parser.add_argument("--check", metavar="ROOT", type=Path, required=True, help="folder holding the categories")
    parser.add_argument("--category", default=None, help="check one category only (default: all)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="threads decoding images (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    return run_check(args.check, args.category, args.workers)


if __name__ == "__main__":
    sys.exit(main())

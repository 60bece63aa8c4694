"""Texture AD dataset and datamodule, with the subclass of every image.

Texture AD (cloth, wafer, metal) splits each category into many *subclasses*,
and its test set contains subclasses never seen in training. Adapted-MoE trains
a router on the subclass, so every item and batch carries ``subclass_id`` (index
into the sorted training subclasses, ``-1`` for an unseen one) and
``subclass_name``.

The layout rules it applies live in the sibling modules
(:mod:`anomalib_adapted_moe.data.texture_ad.scan`, ``.subclasses``, ``.files``),
which ``--check`` shares.

Data source: the Hugging Face dataset ``texture-ad/Texture-AD-Benchmark``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from anomalib import TaskType
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, Split, TestSplitMode, ValSplitMode
from anomalib.utils.path import resolve_dataset_root
from torchvision.transforms.v2 import Transform
from torchvision.tv_tensors import Mask

from anomalib_adapted_moe.argument_types import wrong_argument_types
from anomalib_adapted_moe.command_line import refuse
from anomalib_adapted_moe.data.grouped_warnings import grouped
from anomalib_adapted_moe.data.subclass_batch import SubclassImageBatch, SubclassImageItem
from anomalib_adapted_moe.data.texture_ad.errors import TextureADLayoutError, TextureADNotFoundError, raise_first
from anomalib_adapted_moe.data.texture_ad.files import (
    mask_size_problem,
    mask_warning,
    pairs_problems,
    read_binary_mask,
    read_image_tensor,
    reading_warnings,
)
from anomalib_adapted_moe.data.texture_ad.locate import find_category_dir
from anomalib_adapted_moe.data.texture_ad.samples import make_texture_ad_samples
from anomalib_adapted_moe.data.texture_ad.scan import CategoryLayout, scan_category
from anomalib_adapted_moe.data.texture_ad.subclasses import resolve_subclasses
from anomalib_adapted_moe.data.validation_split import (
    make_synthetic_validation,
    split_train_per_subclass,
    validates_on_test_images,
)

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "./datasets/TextureAD"
_logged_warnings: set[str] = set()


def _log_layout_warnings(layout: CategoryLayout) -> None:
    """Log ignored files once per process (train and test datasets scan the same folder)."""
    lines = list(layout.warnings)
    for sub in layout.subclasses.values():
        lines += sub.warnings
    for line in lines:
        _warn_once(line)


def _warn_once(line: str) -> None:
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

    #: reads its files with errors that name them (the model's dataset file check passes it by)
    checks_its_files = True

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

    def check_files(self) -> None:
        """Decode every image and mask of this split now, raising the first problem (and how many more): ``anomalib
        train`` read a damaged test image only after training. As strict as ``--check`` (PIL's ``verify`` too: a PNG
        with a bad checksum, which reading would pass, is named)."""
        raise_first(pairs_problems(list(zip(self.samples.image_path, self.samples.mask_path, strict=True))))

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
                if said := mask_warning(mask, mask_path, image_path):
                    _warn_once(said[1])
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
        if problem := wrong_argument_types(TextureAD.__init__, locals()):  # from Python: the command checks types
            raise TypeError(problem)
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
        if not 0 < val_split_ratio < 1:  # 1.5 held out all but one image of every subclass, without a word
            msg = (
                f"val_split_ratio={val_split_ratio}: the share of each subclass's training images held out for "
                "validation, between 0 and 1. Fix: e.g. 0.2 (the default)."
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
        try:
            find_category_dir(self.root, self.category)
        except TextureADNotFoundError as error:
            refuse(error)  # the message under the `anomalib` command, not after 150 lines of traceback

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
        try:
            self.train_data = self._make_dataset(Split.TRAIN)
            self.test_data = self._make_dataset(Split.TEST)
        except (TextureADNotFoundError, TextureADLayoutError) as error:
            refuse(error)
        self.warn_about_reading()
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

    def warn_about_reading(self) -> None:
        """Name the training and test images TextureAD reads without a word (:func:`.files.reading_warnings`: the
        first page of several, 12-bit data read 16 times darker), grouped by kind, from the first process; headers
        only, but for a dark 16-bit file."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and not trainer.is_global_zero:
            return
        paths = list(dict.fromkeys([*self.train_data.samples.image_path, *self.test_data.samples.image_path]))
        named = [(kind, path, warning) for path in paths for kind, warning in reading_warnings(path)]
        for line in grouped(named, len(paths)):
            _warn_once(line)  # setup runs for fit and again for test

    def _create_val_split(self) -> None:
        """Per-subclass hold-out for ``synthetic``/``from_train``; anomalib's own code otherwise."""
        if self.val_split_mode == ValSplitMode.SYNTHETIC:
            self.train_data, normal_val = split_train_per_subclass(self.train_data, self.val_split_ratio, self.seed)
            try:  # it reads the held-out images: a damaged one ended in 300 lines of traceback, its message last
                self.val_data = make_synthetic_validation(normal_val, self.seed)
            except TextureADLayoutError as error:
                refuse(error)
        elif self.val_split_mode == ValSplitMode.FROM_TRAIN:
            self.train_data, self.val_data = split_train_per_subclass(self.train_data, self.val_split_ratio, self.seed)
        else:
            if mode := validates_on_test_images(self):
                logger.warning(
                    "val_split_mode=%r validates on test images: thresholds and checkpoints are then chosen on "
                    "test data. Use 'synthetic' (default) for an honest test score.",
                    mode,
                )
            super()._create_val_split()

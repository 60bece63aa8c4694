"""Folder layout of Texture AD: parsing, subclass selection and validation.

Texture AD is organised per category and, inside each category, per *subclass*
(one fabric, one wafer type, one metal plate)::

    <root>/<category>/
        split.json                      # optional: {"seen": [...], "unseen": [...]}
        <subclass>/
            train/good/<name>.<ext>
            test/good/<name>.<ext>
            test/<defect>/<name>.<ext>
            ground_truth/<defect>/<name>_mask.<ext>   (or <name>.<ext>)

Everything that reads this layout lives here, so the datamodule and the
``--check`` command apply exactly the same rules. Structural parsing never opens
an image (cheap enough to run on every ``setup``); :func:`check_category` also
opens every file, which is what a freshly downloaded copy needs.

Problems are collected rather than raised at once, so that ``--check`` can report
all of them in one run; the dataset raises the first one (mentioning how many
more there are).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pandas import DataFrame
from PIL import Image

logger = logging.getLogger(__name__)

HF_DATASET = "texture-ad/Texture-AD-Benchmark"
HF_URL = f"https://huggingface.co/datasets/{HF_DATASET}"
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SPLIT_FILE = "split.json"
MASK_SUFFIX = "_mask"
NORMAL_LABEL = "good"
CHECK_COMMAND = "python -m anomalib_adapted_moe.data.texture_ad --check"

LAYOUT_TEXT = """\
    <root>/<category>/                 category: cloth, wafer, metal (or any folder name)
        split.json                     optional: {"seen": [...], "unseen": [...]}
        <subclass>/
            train/good/*.png           defect-free training images
            test/good/*.png            defect-free test images
            test/<defect>/*.png        defective test images
            ground_truth/<defect>/<stem>_mask.png  (or <stem>.png) one mask per defect image
    (image extensions: png, jpg, jpeg, bmp, tif, tiff, any case)"""


# --------------------------------------------------------------------------- errors


class TextureADLayoutError(ValueError):
    """A Texture AD folder breaks the expected layout; the message names the file and the fix.

    ``problem`` holds the structured :class:`LayoutProblem` when the error was built from one.
    """

    problem: LayoutProblem | None = None


class CorruptImageError(TextureADLayoutError):
    """An image or mask cannot be decoded (truncated, zero bytes, not an image)."""


class MissingMaskError(TextureADLayoutError):
    """A defect image has no mask in ``ground_truth``."""


class OrphanMaskError(TextureADLayoutError):
    """A mask in ``ground_truth`` has no defect image."""


class AmbiguousMaskError(TextureADLayoutError):
    """A defect image matches more than one mask (or two images share one stem)."""


class MaskSizeMismatchError(TextureADLayoutError):
    """A mask's width and height differ from its image's."""


class UnknownSubclassError(TextureADLayoutError):
    """A requested subclass name (argument or ``split.json``) has no folder."""


class SplitFileError(TextureADLayoutError):
    """``split.json`` is not valid JSON or not of the form ``{"seen": [...], "unseen": [...]}``."""


class EmptyTrainingSetError(TextureADLayoutError):
    """There is nothing to train on (no training subclass, or one without images)."""


class EmptyTestSetError(TextureADLayoutError):
    """The selected test subclasses hold no test image at all."""


class TextureADNotFoundError(FileNotFoundError):
    """The dataset root or category folder does not exist."""


@dataclass(frozen=True)
class LayoutProblem:
    """One problem found in the layout: what is wrong with which file, and how to fix it."""

    error: type[TextureADLayoutError]
    path: Path | str
    message: str
    fix: str

    def __str__(self) -> str:
        """Render as ``<path>: <message> Fix: <fix>``, the line ``--check`` prints."""
        return f"{self.path}: {self.message} Fix: {self.fix}"

    def to_error(self, more: int = 0) -> TextureADLayoutError:
        """Build the exception to raise, mentioning how many further problems exist."""
        text = str(self)
        if more:
            text += f" ({more} more problem{'s' if more != 1 else ''}; run `{CHECK_COMMAND} ROOT` to list them all.)"
        error = self.error(text)
        error.problem = self
        return error


def raise_first(problems: Sequence[LayoutProblem]) -> None:
    """Raise the first problem as its exception type, if there is any."""
    if problems:
        raise problems[0].to_error(more=len(problems) - 1)


# --------------------------------------------------------------------------- locating the data


def not_found_message(root: Path, category: str | None = None, missing: Path | None = None) -> str:
    """Explain where Texture AD comes from and how to point ``root`` at it."""
    missing = missing or root
    available = ""
    if category is not None and root.is_dir():
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        available = f"\nFolders found in {root}: {names or 'none'}."
    return (
        f"Texture AD not found: {missing} does not exist.{available}\n"
        f"Texture AD is distributed as the Hugging Face dataset {HF_DATASET} ({HF_URL}); "
        "download the category archives (e.g. Cloth.zip, Wafer.zip) and extract them so that "
        "the folders follow this layout:\n"
        f"{LAYOUT_TEXT}\n"
        "Then pass the folder that contains the category folders as `root` "
        "(Python: TextureAD(root=..., category=...); CLI: --data.root ... --data.category ...), "
        f"and run `{CHECK_COMMAND} ROOT` once to validate the copy. "
        "To try the pipeline without downloading anything, use SyntheticTextureAD."
    )


def find_category_dir(root: Path | str, category: str) -> Path:
    """Return ``root/category``; accept a case-only difference (archives ship ``Cloth``, ``Wafer``)."""
    root = Path(root)
    if not root.is_dir():
        raise TextureADNotFoundError(not_found_message(root))
    exact = root / category
    if exact.is_dir():
        return exact
    matches = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == category.lower()]
    if len(matches) == 1:
        logger.info("Using %s for category %r (case-insensitive match).", matches[0], category)
        return matches[0]
    raise TextureADNotFoundError(not_found_message(root, category, missing=exact))


# --------------------------------------------------------------------------- structural scan


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has one of the accepted image extensions (any case)."""
    return path.suffix.lower() in IMG_EXTENSIONS


def _visible_children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


@dataclass
class SubclassLayout:
    """What one subclass folder holds, after structural parsing (no image is opened)."""

    name: str
    root: Path
    has_train_dir: bool = False
    train_images: list[Path] = field(default_factory=list)
    test_images: list[tuple[Path, str]] = field(default_factory=list)  # (image, defect folder name)
    masks: dict[Path, Path] = field(default_factory=dict)  # defect image -> its mask
    mask_files: list[Path] = field(default_factory=list)
    problems: list[LayoutProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def train_dir(self) -> Path:
        """The folder training images are read from."""
        return self.root / "train" / NORMAL_LABEL


@dataclass
class CategoryLayout:
    """All subclasses of one category, plus ``split.json`` if present."""

    root: Path
    subclasses: dict[str, SubclassLayout]
    split: tuple[list[str], list[str]] | None = None  # (seen, unseen)
    problems: list[LayoutProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Sorted subclass names."""
        return sorted(self.subclasses)


def _images_in(folder: Path, warnings: list[str]) -> list[Path]:
    """Image files directly in ``folder``; anything else is reported as a warning, not dropped silently."""
    images = []
    for child in _visible_children(folder):
        if child.is_file() and is_image_file(child):
            images.append(child)
        else:
            kind = "folder" if child.is_dir() else "file with an unsupported extension"
            warnings.append(f"{child}: ignored ({kind}; only {', '.join(IMG_EXTENSIONS)} images are read here).")
    return images


def _match_masks(sub: SubclassLayout, defect: str, images: list[Path]) -> None:
    """Pair every defect image with exactly one mask, and every mask with exactly one image."""
    gt_dir = sub.root / "ground_truth" / defect
    masks = _images_in(gt_dir, sub.warnings) if gt_dir.is_dir() else []
    sub.mask_files.extend(masks)
    by_stem: dict[str, list[Path]] = {}
    for mask in masks:
        by_stem.setdefault(mask.stem, []).append(mask)
    claimed: dict[Path, Path] = {}
    contested: set[Path] = set()  # already reported as ambiguous, so not orphans too
    for image in images:
        candidates = by_stem.get(image.stem + MASK_SUFFIX, []) + by_stem.get(image.stem, [])
        if not candidates:
            sub.problems.append(
                LayoutProblem(
                    MissingMaskError,
                    image,
                    f"defect image has no mask; expected {gt_dir / (image.stem + MASK_SUFFIX)}.<ext> "
                    f"or {gt_dir / image.stem}.<ext> (png, jpg, ...).",
                    "add its mask there, move the image to test/good if it is defect-free, or delete it.",
                )
            )
        elif len(candidates) > 1:
            contested.update(candidates)
            sub.problems.append(
                LayoutProblem(
                    AmbiguousMaskError,
                    image,
                    f"defect image matches {len(candidates)} masks: {', '.join(str(c) for c in candidates)}.",
                    "keep exactly one mask per image and delete the others.",
                )
            )
        elif candidates[0] in claimed:
            sub.problems.append(
                LayoutProblem(
                    AmbiguousMaskError,
                    image,
                    f"shares its mask {candidates[0]} with {claimed[candidates[0]]} (same file stem).",
                    "give every defect image a unique file name (and its mask the matching one).",
                )
            )
        else:
            claimed[candidates[0]] = image
            sub.masks[image] = candidates[0]
    for mask in masks:
        if mask not in claimed and mask not in contested:
            stem = mask.stem[: -len(MASK_SUFFIX)] if mask.stem.endswith(MASK_SUFFIX) else mask.stem
            sub.problems.append(
                LayoutProblem(
                    OrphanMaskError,
                    mask,
                    f"mask has no defect image; expected {sub.root / 'test' / defect / stem}.<ext> (png, jpg, ...).",
                    "restore the missing image, rename the mask to match its image, or delete the mask.",
                )
            )


def scan_subclass(folder: Path) -> SubclassLayout:
    """Parse one subclass folder: train images, test images with labels, and mask pairing."""
    sub = SubclassLayout(name=folder.name, root=folder)
    train_root = folder / "train"
    if train_root.is_dir():
        for child in _visible_children(train_root):
            if child.name != NORMAL_LABEL:
                sub.warnings.append(f"{child}: ignored (training data is read from train/{NORMAL_LABEL} only).")
    sub.has_train_dir = sub.train_dir.is_dir()
    if sub.has_train_dir:
        sub.train_images = _images_in(sub.train_dir, sub.warnings)

    test_root = folder / "test"
    defects: set[str] = set()
    if test_root.is_dir():
        for child in _visible_children(test_root):
            if not child.is_dir():
                sub.warnings.append(f"{child}: ignored (test images belong in test/good or test/<defect>/).")
                continue
            images = _images_in(child, sub.warnings)
            sub.test_images.extend((image, child.name) for image in images)
            if child.name != NORMAL_LABEL:
                defects.add(child.name)
                _match_masks(sub, child.name, images)

    gt_root = folder / "ground_truth"
    if gt_root.is_dir():
        for child in _visible_children(gt_root):
            if child.is_dir() and child.name not in defects and child.name != NORMAL_LABEL:
                _match_masks(sub, child.name, [])  # every mask here is an orphan
            elif not child.is_dir():
                sub.warnings.append(f"{child}: ignored (masks belong in ground_truth/<defect>/).")
    return sub


def _read_split_file(path: Path, names: list[str]) -> tuple[tuple[list[str], list[str]] | None, list[LayoutProblem]]:
    """Read ``split.json``; return ``((seen, unseen), problems)``."""
    fix_form = 'write it as {"seen": ["<subclass>", ...], "unseen": ["<subclass>", ...]} or delete it.'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, [LayoutProblem(SplitFileError, path, f"cannot be read as JSON ({err}).", fix_form)]
    if not isinstance(data, dict) or not isinstance(data.get("seen"), list):
        return None, [LayoutProblem(SplitFileError, path, "has no list under the key 'seen'.", fix_form)]
    seen, unseen = data["seen"], data.get("unseen", [])
    if not isinstance(unseen, list) or not all(isinstance(n, str) for n in [*seen, *unseen]):
        return None, [LayoutProblem(SplitFileError, path, "'seen' and 'unseen' must be lists of names.", fix_form)]
    problems = []
    for key, listed in (("seen", seen), ("unseen", unseen)):
        unknown = sorted(set(listed) - set(names))
        if unknown:
            problems.append(
                LayoutProblem(
                    UnknownSubclassError,
                    path,
                    f"'{key}' names unknown subclass(es) {unknown}; available: {names}.",
                    "correct the names (they are folder names, case-sensitive) or delete split.json.",
                )
            )
    both = sorted(set(seen) & set(unseen))
    if both:
        problems.append(
            LayoutProblem(SplitFileError, path, f"lists {both} as both seen and unseen.", "keep each name in one list.")
        )
    return (sorted(set(seen)), sorted(set(unseen))), problems


def scan_category(category_root: Path) -> CategoryLayout:
    """Parse every subclass of a category and its ``split.json`` (no image is opened)."""
    subclasses: dict[str, SubclassLayout] = {}
    warnings: list[str] = []
    for child in _visible_children(category_root):
        if child.is_dir():
            if any((child / part).is_dir() for part in ("train", "test", "ground_truth")):
                subclasses[child.name] = scan_subclass(child)
            else:
                warnings.append(f"{child}: ignored (not a subclass folder: it has no train/, test/ or ground_truth/).")
        elif child.name != SPLIT_FILE:
            warnings.append(f"{child}: ignored (a category folder holds subclass folders and split.json only).")
    layout = CategoryLayout(root=category_root, subclasses=subclasses, warnings=warnings)
    split_path = category_root / SPLIT_FILE
    if split_path.is_file():
        layout.split, layout.problems = _read_split_file(split_path, layout.names)
        if layout.split is not None:
            left_out = sorted(set(layout.names) - set(layout.split[0]) - set(layout.split[1]))
            if left_out:
                warnings.append(f"{split_path}: subclasses {left_out} are in neither 'seen' nor 'unseen'; not used.")
    return layout


# --------------------------------------------------------------------------- subclass selection


def _unknown_names(requested: Iterable[str], layout: CategoryLayout, what: str) -> list[LayoutProblem]:
    unknown = sorted(set(requested) - set(layout.names))
    if not unknown:
        return []
    return [
        LayoutProblem(
            UnknownSubclassError,
            layout.root,
            f"{what} names unknown subclass(es) {unknown}; available: {layout.names}.",
            f"pass names from the available list (folder names, case-sensitive) in {what}.",
        )
    ]


def resolve_subclasses(
    layout: CategoryLayout,
    train_subclasses: Sequence[str] | None = None,
    test_subclasses: Sequence[str] | None = None,
) -> tuple[list[str], list[str], list[LayoutProblem]]:
    """Decide which subclasses train and which test; return ``(train, test, problems)``.

    Each list is chosen independently: the explicit argument if given, else
    ``split.json`` (train = seen, test = seen + unseen), else the default (train:
    every subclass with a ``train/good`` folder; test: every subclass).
    """
    problems = list(layout.problems)
    if isinstance(train_subclasses, str) or isinstance(test_subclasses, str):
        msg = "train_subclasses/test_subclasses must be lists of names, not a single string (use ['name'])."
        raise TypeError(msg)
    if train_subclasses is not None:
        problems += _unknown_names(train_subclasses, layout, "train_subclasses")
        train = sorted(set(train_subclasses) & set(layout.names))
        source = "train_subclasses"
    elif layout.split is not None:
        train = [n for n in layout.split[0] if n in layout.subclasses]
        source = f"'seen' in {layout.root / SPLIT_FILE}"
    else:
        train = [n for n in layout.names if layout.subclasses[n].has_train_dir]
        source = "the default rule: every subclass with train/good"
    if test_subclasses is not None:
        problems += _unknown_names(test_subclasses, layout, "test_subclasses")
        test = sorted(set(test_subclasses) & set(layout.names))
    elif layout.split is not None:
        test = sorted(n for n in {*layout.split[0], *layout.split[1]} if n in layout.subclasses)
    else:
        test = list(layout.names)

    if not train and not any(p.error is UnknownSubclassError for p in problems):
        problems.append(
            LayoutProblem(
                EmptyTrainingSetError,
                layout.root,
                f"no training subclass (selected by {source}); found subclasses {layout.names}.",
                "add <subclass>/train/good/ folders with defect-free images, or point root at the folder that "
                "holds the category folders (<root>/<category>/<subclass>/train/good/*.png).",
            )
        )
    for name in train:
        sub = layout.subclasses[name]
        if not sub.train_images:
            state = "is empty" if sub.has_train_dir else "does not exist"
            problems.append(
                LayoutProblem(
                    EmptyTrainingSetError,
                    sub.train_dir,
                    f"training subclass '{name}' (selected by {source}) has no training images: the folder {state}.",
                    f"add defect-free images there, or leave '{name}' out of the training subclasses "
                    "(train_subclasses / 'seen' in split.json).",
                )
            )
    if test and not any(layout.subclasses[n].test_images for n in test):
        problems.append(
            LayoutProblem(
                EmptyTestSetError,
                layout.root,
                f"the test subclasses {test} hold no image under test/.",
                "add test/good and test/<defect> folders, or choose other test_subclasses.",
            )
        )
    for name in sorted({*train, *test}):
        problems += layout.subclasses[name].problems
    return train, test, problems


# --------------------------------------------------------------------------- samples


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


# --------------------------------------------------------------------------- reading files


CORRUPT_FIX = (
    "the file is damaged or incomplete (e.g. an interrupted download or extraction); extract it again from "
    f"the Hugging Face dataset {HF_DATASET}, or delete it (and its mask) if you accept losing it."
)


def _corrupt(path: Path | str, err: BaseException, fix: str = CORRUPT_FIX) -> TextureADLayoutError:
    problem = LayoutProblem(CorruptImageError, path, f"cannot be read as an image ({type(err).__name__}: {err}).", fix)
    return problem.to_error()


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image_tensor(path: Path | str) -> torch.Tensor:
    """Read an image as float RGB ``[3, H, W]`` in [0, 1]; raise :class:`CorruptImageError` naming the file.

    16-bit grey images are scaled by 65535 instead of being clipped to 255 (which
    is what a plain ``convert("RGB")`` does).
    """
    try:
        with Image.open(path) as image:
            if image.mode in _SIXTEEN_BIT_MODES:
                array = np.asarray(image, dtype=np.float32) / 65535.0
                tensor = torch.from_numpy(np.clip(array, 0.0, 1.0)).unsqueeze(0).expand(3, -1, -1).contiguous()
            else:
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
                tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    except Exception as err:
        raise _corrupt(path, err) from err
    return tensor


def read_binary_mask(path: Path | str) -> np.ndarray:
    """Read a mask of any format as a boolean ``[H, W]`` array: any non-zero pixel is defect.

    Handles grey, RGB(A) (any channel > 0; alpha ignored), palette (the palette
    colour of each index, so a dark but non-black label colour still counts) and
    16-bit masks. ``Image.convert("L")`` would lose e.g. a pure-blue value of 1.
    """
    try:
        with Image.open(path) as image:
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            array = np.asarray(image)
            mode = image.mode
    except Exception as err:
        raise _corrupt(path, err) from err
    if array.ndim == 3:
        if mode in {"RGBA", "RGBa", "LA", "La", "PA"}:
            array = array[..., :-1]  # alpha says nothing about the defect
        return (array > 0).any(axis=-1)
    return array > 0


def image_size(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` from the header; raise :class:`CorruptImageError` naming the file."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as err:
        raise _corrupt(path, err) from err


def mask_size_problem(
    image: Path | str,
    image_wh: tuple[int, int],
    mask: Path | str,
    mask_wh: tuple[int, int],
) -> LayoutProblem | None:
    """The problem for a mask whose size differs from its image's, or ``None``."""
    if tuple(image_wh) == tuple(mask_wh):
        return None
    return LayoutProblem(
        MaskSizeMismatchError,
        mask,
        f"mask is {mask_wh[0]}x{mask_wh[1]} but its image {image} is {image_wh[0]}x{image_wh[1]} (width x height).",
        "replace it with the mask made for this image, or resize it to the image size with nearest-neighbour "
        "interpolation.",
    )


def verify_image_file(path: Path, fix: str = CORRUPT_FIX) -> tuple[int, int]:
    """Fully decode ``path`` (``verify()`` then ``load()``); return ``(width, height)``.

    ``fix`` is the advice the error gives (the default suits a Texture AD copy).

    Raises:
        CorruptImageError: if the file is empty, not an image, or truncated.
    """
    try:
        if path.stat().st_size == 0:
            raise OSError("the file is empty (0 bytes)")
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
            return image.size
    except Exception as err:
        raise _corrupt(path, err, fix) from err


# --------------------------------------------------------------------------- full check


@dataclass
class CheckReport:
    """Outcome of :func:`check_category`: every problem, warnings, and counts."""

    problems: list[LayoutProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    subclasses: int = 0
    images: int = 0
    masks: int = 0


def check_category(category_root: Path, workers: int = 4) -> CheckReport:
    """Find every problem of one category: layout, ``split.json``, subclass selection, and file contents.

    Every image and mask is decoded (threads: decoding releases the GIL), and
    each mask's size is compared to its image's.
    """
    layout = scan_category(category_root)
    report = CheckReport(warnings=list(layout.warnings), subclasses=len(layout.subclasses))
    _, _, problems = resolve_subclasses(layout)
    # resolve_subclasses only adds the subclass problems of selected subclasses; a copy check covers all.
    selected_problem_ids = {id(p) for p in problems}
    for sub in layout.subclasses.values():
        report.warnings += sub.warnings
        problems += [p for p in sub.problems if id(p) not in selected_problem_ids]
    report.problems = problems

    files = []
    for sub in layout.subclasses.values():
        files += sub.train_images + [image for image, _ in sub.test_images] + sub.mask_files
    report.images = sum(len(s.train_images) + len(s.test_images) for s in layout.subclasses.values())
    report.masks = sum(len(s.mask_files) for s in layout.subclasses.values())

    def _verify(path: Path) -> tuple[Path, tuple[int, int] | LayoutProblem]:
        try:
            return path, verify_image_file(path)
        except CorruptImageError as err:
            return path, err.problem

    sizes: dict[Path, tuple[int, int]] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, outcome in pool.map(_verify, files):
            if isinstance(outcome, LayoutProblem):
                report.problems.append(outcome)
            else:
                sizes[path] = outcome
    for sub in layout.subclasses.values():
        for image, mask in sub.masks.items():
            if image in sizes and mask in sizes:
                problem = mask_size_problem(image, sizes[image], mask, sizes[mask])
                if problem is not None:
                    report.problems.append(problem)
    return report

"""Structural scan of a Texture AD category: subclasses, images, mask pairing and ``split.json``.

The scan never opens an image, so it is cheap enough to run on every ``setup``;
:func:`~anomalib_adapted_moe.data.texture_ad.check.check_category` also decodes every file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from anomalib_adapted_moe.data.texture_ad.errors import (
    AmbiguousMaskError,
    CorruptImageError,
    LayoutProblem,
    MissingMaskError,
    OrphanMaskError,
    SplitFileError,
    UnknownSubclassError,
)
from anomalib_adapted_moe.data.texture_ad.layout import IMG_EXTENSIONS, MASK_SUFFIX, NORMAL_LABEL, SPLIT_FILE


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


def _images_in(folder: Path, warnings: list[str], problems: list[LayoutProblem]) -> list[Path]:
    """Image files directly in ``folder``; anything else is reported as a warning, not dropped silently, and a
    link whose target is gone as a problem (an image of the copy is missing)."""
    images = []
    for child in _visible_children(folder):
        if child.is_file() and is_image_file(child):
            images.append(child)
        elif child.is_symlink() and not child.exists():
            problems.append(
                LayoutProblem(
                    CorruptImageError,
                    child,
                    f"is a broken link: its target {os.readlink(child)} does not exist.",
                    "restore the file it points to, or delete the link (and its mask) if you accept losing it.",
                )
            )
        else:
            kind = "folder" if child.is_dir() else "file with an unsupported extension"
            warnings.append(f"{child}: ignored ({kind}; only {', '.join(IMG_EXTENSIONS)} images are read here).")
    return images


def _match_masks(sub: SubclassLayout, defect: str, images: list[Path]) -> None:
    """Pair every defect image with exactly one mask, and every mask with exactly one image."""
    gt_dir = sub.root / "ground_truth" / defect
    masks = _images_in(gt_dir, sub.warnings, sub.problems) if gt_dir.is_dir() else []
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
        sub.train_images = _images_in(sub.train_dir, sub.warnings, sub.problems)

    test_root = folder / "test"
    defects: set[str] = set()
    if test_root.is_dir():
        for child in _visible_children(test_root):
            if not child.is_dir():
                sub.warnings.append(f"{child}: ignored (test images belong in test/good or test/<defect>/).")
                continue
            images = _images_in(child, sub.warnings, sub.problems)
            if not images:  # an incomplete copy: that kind of test image would be missing from the figures
                sub.warnings.append(f"{child}: no image in it, so no test/{child.name} image is tested.")
            sub.test_images.extend((image, child.name) for image in images)
            if child.name != NORMAL_LABEL:
                defects.add(child.name)
                _match_masks(sub, child.name, images)

    labels = {label != NORMAL_LABEL for _image, label in sub.test_images}  # False: good, True: defective
    if not sub.test_images:
        sub.warnings.append(f"{folder}: no image under test/, so this subclass is not tested.")
    elif len(labels) == 1:
        kind = f"test/{NORMAL_LABEL}/ images only" if False in labels else f"no test/{NORMAL_LABEL}/ image"
        sub.warnings.append(f"{folder}: {kind}, so this subclass's own AUROC cannot be computed (its row reads nan).")
    gt_root = folder / "ground_truth"
    if gt_root.is_dir():
        for child in _visible_children(gt_root):
            if child.is_dir() and child.name not in defects and child.name != NORMAL_LABEL:
                _match_masks(sub, child.name, [])  # every mask here is an orphan
            elif child.name == NORMAL_LABEL:
                sub.warnings.append(f"{child}: ignored (a defect-free image's mask is empty by definition).")
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

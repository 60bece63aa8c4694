"""``python -m anomalib_adapted_moe.data.texture_ad --check ROOT``: every layout problem of a copy, in one run.

Unlike the dataset, which raises the first problem of the selected subclasses,
the check covers every subclass and decodes every image and mask.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from anomalib_adapted_moe.data.grouped_warnings import grouped
from anomalib_adapted_moe.data.texture_ad.errors import (
    LayoutProblem,
    TextureADLayoutError,
    TextureADNotFoundError,
)
from anomalib_adapted_moe.data.texture_ad.files import (
    decode_problem,
    mask_size_problem,
    mask_warning,
    read_binary_mask,
    reading_warnings,
)
from anomalib_adapted_moe.data.texture_ad.layout import IMG_EXTENSIONS, LAYOUT_TEXT
from anomalib_adapted_moe.data.texture_ad.locate import find_category_dir, holds_subclasses, not_found_message
from anomalib_adapted_moe.data.texture_ad.scan import scan_category
from anomalib_adapted_moe.data.texture_ad.subclasses import resolve_subclasses


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

    files, images = [], set()
    for sub in layout.subclasses.values():
        files += sub.train_images + [image for image, _ in sub.test_images] + sub.mask_files
        images |= {*sub.train_images, *(image for image, _ in sub.test_images)}
    masked = {mask: image for sub in layout.subclasses.values() for image, mask in sub.masks.items()}
    report.images = sum(len(s.train_images) + len(s.test_images) for s in layout.subclasses.values())
    report.masks = sum(len(s.mask_files) for s in layout.subclasses.values())

    def _verify(path: Path) -> tuple[Path, tuple[int, int] | LayoutProblem, list[tuple[str, str]]]:
        size, problem = decode_problem(path, image=path in images)
        if problem is not None:
            return path, problem, []
        warnings = reading_warnings(path) if path in images else []
        if path in masked and (said := mask_warning(read_binary_mask(path), path, masked[path])):
            warnings.append(said)  # an orphan mask is a problem already
        return path, size, warnings

    sizes: dict[Path, tuple[int, int]] = {}
    named = []  # (kind, file, warning), grouped by kind: a 12-bit camera's set named every file
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, outcome, warnings in pool.map(_verify, files):  # in the files' order, whichever thread is first
            named += [(kind, path, warning) for kind, warning in warnings]
            if isinstance(outcome, LayoutProblem):
                report.problems.append(outcome)
            else:
                sizes[path] = outcome
    report.warnings += grouped(named, report.images, report.masks)
    for sub in layout.subclasses.values():
        for image, mask in sub.masks.items():
            if image in sizes and mask in sizes:
                problem = mask_size_problem(image, sizes[image], mask, sizes[mask])
                if problem is not None:
                    report.problems.append(problem)
    return report


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _category_dirs(root: Path, category: str | None) -> tuple[list[Path], list[LayoutProblem], list[str]]:
    """The category folders to check, the root's layout problems, and warnings about folders that are skipped."""
    if category is not None:
        return [find_category_dir(root, category)], [], []
    if not root.is_dir():
        raise TextureADNotFoundError(not_found_message(root))
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    # downloads carry LICENSES/, __MACOSX/ and the like beside the categories: named, then left alone
    skipped = [p for p in dirs if not holds_subclasses(p) and any(holds_subclasses(q) for q in dirs)]
    warnings = [f"{p}: not a category (no subclass folder with train/ or test/ in it); skipped." for p in skipped]
    dirs = [p for p in dirs if p not in skipped]
    problems = []
    looks_like_category = [p for p in dirs if (p / "train").is_dir() or (p / "test").is_dir()]
    if (root / "train").is_dir() or (root / "test").is_dir():  # a subclass folder given as the root
        problems.append(
            LayoutProblem(
                TextureADLayoutError,
                root,
                "looks like a subclass folder (it holds train/ or test/), not the dataset root.",
                f"pass {root.parent.parent} as ROOT and add --category {root.parent.name}.",
            )
        )
        dirs = []
    elif looks_like_category:
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
    elif dirs and not any(holds_subclasses(p) for p in dirs) and any(_holds_images(p) for p in dirs):
        problems.append(  # Folder's normal/, abnormal/, mask/ were checked as categories: 99 warnings, 8 problems
            LayoutProblem(
                TextureADLayoutError,
                root,
                f"looks like anomalib's Folder layout (folders of images: {[p.name for p in dirs if _holds_images(p)]}"
                "), not TextureAD's <category>/<subclass>/train/good/.",
                "train it with --data Folder (configs/data/folder_example.yaml), whose folders and masks the model "
                "checks when training starts; or lay the images out as TextureAD for --check and per-subclass experts.",
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
    return dirs, problems, warnings


def _holds_images(folder: Path) -> bool:
    """Image files right in ``folder`` (a Folder setting's folder; a TextureAD category holds subclass folders)."""
    return any(path.is_file() and path.suffix.lower() in IMG_EXTENSIONS for path in folder.iterdir())


def run_check(root: Path, category: str | None = None, workers: int = 4) -> int:
    """Report every layout problem under ``root``; return the exit code (0 clean, 1 problems, 2 not found)."""
    try:
        categories, problems, warnings = _category_dirs(root, category)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
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

"""An anomalib ``MVTecAD`` category folder checked before MVTecAD reads it: its masks and links named by file.

MVTecAD pairs the sorted defect images (``test/<defect>/``) with the sorted
masks (``ground_truth/<defect>/``) in order, as Folder does: a missing mask ended
in pandas' "Must have equal len keys and value when setting with an iterable",
after a long traceback, naming no file. It also reads only the files inside the
category folder: images linked from elsewhere were dropped without a word (half
the training images of a walkthrough's linked copy), and a linked folder is not
looked into at all. It reads only .png and .PNG files: a variant saved as .jpg or
.Png was left out without a word (and its discovered expert with it). The model
runs this check in ``prepare_data``, before the datamodule's ``setup`` reads the
folder.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from anomalib.data import MVTecAD
from anomalib.data.datasets.image.mvtecad import CATEGORIES as MVTEC_CATEGORIES
from anomalib.data.datasets.image.mvtecad import IMG_EXTENSIONS
from anomalib.data.utils.path import is_within_directory

from .folder_layout import (
    FolderLayoutError,
    layout_message,
    mask_pairing_problems,
    refused_letters,
    unread_linked_folders,
)

logger = logging.getLogger(__name__)

#: image files other readers take that MVTecAD skips (its IMG_EXTENSIONS: .png and .PNG)
OTHER_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

FIXES = {
    "folders": "give the category its good training images in train/good (and the path ASCII letters only: anomalib "
    "refuses any other letter in it, and says 'non-printable'); --data.root is the folder holding the category",
    "extensions": "convert them to PNG (MVTecAD reads .png and .PNG files only), or train on the folder with "
    "--data Folder (configs/data/folder_example.yaml), which reads .jpg, .bmp, .tif, ... too",
    "links": "copy the linked files and folders into the category folder, or link the whole category folder instead",
    "masks": "give every defect image test/<defect>/<name>.png its mask ground_truth/<defect>/<name>_mask.png, and "
    "nothing else under ground_truth: MVTecAD sorts images and masks and pairs them in order",
    "order": "name every mask <name>_mask.png and number the images at one width (001, 010, not 1, 10), so that images "
    "and masks sort in the same order: MVTecAD pairs the two sorted lists in order",
}


def check_mvtec_layout(datamodule: MVTecAD) -> None:
    """Raise :class:`~.folder_layout.FolderLayoutError` naming a path anomalib refuses, a missing or empty
    ``train/good``, image files MVTecAD would skip (any but .png and .PNG), files and folders linked from outside the
    category folder, defect images without a mask and masks of no image (five of each kind, the others counted);
    warn of a test split without good images."""
    folder = Path(datamodule.root) / datamodule.category
    if not folder.is_dir():
        return  # MVTecAD's own download (prepare_data, run before this) would have failed first
    problems: dict[str, list[str]] = {kind: [] for kind in FIXES}
    if letters := refused_letters(folder.absolute()):  # MVTecAD's setup: a traceback, "non-printable"
        problems["folders"].append(f"{folder}: holds {letters!r}, which anomalib refuses in a path")
        raise FolderLayoutError(
            layout_message(f"{folder}: anomalib's MVTecAD cannot read this category", problems, FIXES)
        )
    every_file = list(folder.glob("**/*"))
    files = [path for path in every_file if path.suffix in IMG_EXTENSIONS]
    if not any(path.parts[-3:-1] == ("train", "good") for path in files):  # "num_samples=0" after 267 lines
        problems["folders"].append(f"{folder / 'train' / 'good'}: no .png image there (the good training images)")
    # MVTecAD skips every other image file without a word: a .jpg variant left out, and its expert with it
    skipped = [p for p in every_file if p.suffix.lower() in OTHER_IMAGES and p.suffix not in IMG_EXTENSIONS]
    if skipped:
        problems["extensions"] += [f"{path}: MVTecAD would skip it ({path.suffix})" for path in skipped]
    if any(path.parts[-3] == "test" for path in files) and not any(
        path.parts[-3:-1] == ("test", "good") for path in files
    ):
        logger.warning(
            "%s: no good test image (test/good): anomalib fills the test split with a share of the training "
            "images, so a checkpoint of this category tested with another seed scores images it trained on (a "
            "walkthrough: 5 of 9). Fix: put good test images in test/good.",
            folder,
        )
    problems["links"] = unread_linked_folders(folder, IMG_EXTENSIONS, str(folder), "MVTecAD")
    if linked := [path for path in files if not is_within_directory(folder, path)]:
        problems["links"] += [f"{path}: a link to {path.resolve()}, outside {folder}" for path in linked]
        problems["links"][-len(linked)] += f" ({len(linked)} of its {len(files)} images; MVTecAD would drop them)"
    outside = set(linked)
    inside = [path for path in files if path not in outside]
    # MVTecAD pairs all defect images with all masks, sorted as text; with the same defect folders on both sides
    # that is each folder's pairing, and a folder's own lists name a missing mask (000-numbered folders share names)
    by_defect: dict[str, tuple[list[Path], list[Path]]] = defaultdict(lambda: ([], []))
    for path in inside:
        if path.parts[-3] == "test" and path.parts[-2] != "good":
            by_defect[path.parts[-2]][0].append(path)
        elif path.parts[-3] == "ground_truth":
            by_defect[path.parts[-2]][1].append(path)
    for defect, (images, masks) in sorted(by_defect.items()):
        if not masks:
            problems["masks"].append(
                f"{folder / 'ground_truth' / defect}: no mask for the {len(images)} images of test/{defect}"
            )
            continue
        kind, pairing = mask_pairing_problems(sorted(images, key=str), sorted(masks, key=str), "MVTecAD")
        problems[kind] += pairing
    if any(problems.values()):
        heading = f"{folder}: anomalib's MVTecAD cannot read this category as given"
        raise FolderLayoutError(layout_message(heading, problems, FIXES))


def unknown_mvtec_category(root: object, category: object, category_option: str, root_option: str) -> str | None:
    """Why ``category`` under ``root`` is neither a folder there nor one of MVTecAD's own (``None``: it is one, or
    left to anomalib: MVTecAD's own download, or its own error for a root of None)."""
    if root is None or category is None or category in MVTEC_CATEGORIES or (Path(root) / category).is_dir():
        return None
    root = Path(root)
    if (root / "train").is_dir() or (root / "test").is_dir():  # the category folder given as the root
        return (
            f"{root_option} {root} is itself a category folder (it holds train/ or test/), so {category_option} "
            f"{category!r} is not under it. Fix: give its parent, {root_option} {root.parent}, and {category_option} "
            f"{root.name}."
        )
    found = sorted(path.name for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    return (
        f"{category_option} {category!r}: no folder {root / category}, and MVTecAD has no such category, so "
        f"anomalib would download the whole MVTecAD and still not find it. Fix: give a category folder under "
        f"{root_option} {root} ({', '.join(found) if found else 'none there'}) or one of MVTecAD's own "
        f"({', '.join(MVTEC_CATEGORIES)})."
    )

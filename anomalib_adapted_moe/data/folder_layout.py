"""The folders of anomalib's ``Folder`` datamodule, checked before Folder reads them: problems named by file.

Folder pairs masks with defect images by sorting both lists and taking them in
order, then checks that each image's name is inside its mask's. A missing mask
ends in numpy's "cannot assign 2 input values to the 3 output values", a misnamed
one in ``MisMatchError`` without a file named, and a missing or empty folder in a
traceback. The model runs this check in ``prepare_data``, which Lightning calls
before the datamodule's ``setup``. It refuses every folder and mask problem Folder
would stop on, and one mask for several defect images, which Folder would give to
each of them (a mask folder inside the defect folder is listed among the defects),
masks without defect images (dropped), and a test split with no image to validate
on (anomalib's "not enough values to unpack" in Folder's split).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from anomalib.data import Folder
from anomalib.data.utils import TestSplitMode, ValSplitMode
from anomalib.data.utils.path import contains_non_printable_characters, resolve_path, validate_and_resolve_path
from torchvision.datasets.folder import IMG_EXTENSIONS

logger = logging.getLogger(__name__)

#: the datamodule's folder settings, in the order they are reported
FOLDER_SETTINGS = ("normal_dir", "abnormal_dir", "normal_test_dir", "mask_dir")

#: problems listed by name per kind; the rest of a kind are counted
LISTED_PER_KIND = 5

FIXES = {
    "folders": "point each setting at its own folder that exists and holds its images (a relative path is read under "
    "--data.root), or leave out an optional one (abnormal_dir, normal_test_dir, mask_dir)",
    "masks": "give every defect image one mask named after it (000.png -> 000.png or 000_mask.png) and no other "
    "files in the mask folder: Folder sorts both lists and pairs them in order",
    "links": "copy a linked folder's images in, or give the linked folder as a setting of its own (each setting "
    "takes a list of folders)",
    "splits": "give Folder test images to validate on (--data.abnormal_dir with defect images, --data.normal_test_dir "
    "with good ones, or more good training images for test_split_ratio to take from), or validate on held-out "
    "training images with synthetic defects (--data.val_split_mode synthetic)",
    "names": "rename each folder named (or the one above it holding the letters) with ASCII letters, digits and "
    "punctuation only: anomalib's Folder refuses any other letter in a folder's path, and says 'non-printable'; or lay "
    "the images out as TextureAD, which takes any name",
    "order": "name every mask alike (000.png -> 000_mask.png for all of them) and numbers at one width (001, 010, "
    "not 1, 10), so that images and masks sort in the same order: Folder pairs the two sorted lists in order",
}


class FolderLayoutError(ValueError):
    """anomalib's ``Folder`` would stop on its folders or its validation split, or read images or masks wrongly."""


#: (first JPEG mask, count) of the Folders named for JPEG masks in this process
_NAMED_JPEG_MASKS: set[tuple[Path, int]] = set()


def check_folder_layout(datamodule: Folder) -> dict[str, list[Path]]:
    """Raise :class:`FolderLayoutError` naming the missing or empty folders, else the unpaired images and masks (five
    of each kind, the others counted); return the images of each setting (``normal_dir``, ...) Folder will read."""
    problems: dict[str, list[str]] = {kind: [] for kind in FIXES}
    extensions = tuple(datamodule.extensions or IMG_EXTENSIONS)
    if isinstance(datamodule.extensions, str) or not all(extension.startswith(".") for extension in extensions):
        problems["folders"].append(f"extensions {datamodule.extensions!r}: a list of endings with their dot, ['.png']")
    extensions = tuple(extension.lower() for extension in extensions)
    if not _as_list(datamodule.normal_dir):
        problems["folders"].append("normal_dir: no folder given (--data.normal_dir: the good training images)")
    images: dict[str, list[Path]] = {setting: [] for setting in FOLDER_SETTINGS}
    root_missing = datamodule.root is not None and not Path(datamodule.root).exists()
    under_missing_root = False
    for setting in FOLDER_SETTINGS:
        for folder in _as_list(getattr(datamodule, setting)):
            if root_missing and not Path(folder).is_absolute():  # one typo, named once below: not a line a folder
                under_missing_root = True
                continue
            found, problem = _images_in(folder, datamodule.root, setting, extensions, problems)
            images[setting] += found
            problems["folders"] += [problem] if problem else []
    if under_missing_root:
        problems["folders"].append(
            f"{Path(datamodule.root).absolute()}: no such folder (--data.root), so none of the folders under it"
        )
    problems["folders"] += shared_files(images)
    if images["mask_dir"] and not _as_list(datamodule.abnormal_dir):
        problems["folders"].append(
            f"{resolve_path(_as_list(datamodule.mask_dir)[0], datamodule.root)}: {len(images['mask_dir'])} masks "
            "(--data.mask_dir) but no --data.abnormal_dir, the defect images they belong to: Folder would drop them "
            "without a word"
        )
    every_folder_read = not (problems["folders"] or problems["names"])
    if images["mask_dir"] and images["abnormal_dir"] and every_folder_read:  # Folder pairs only then
        # Folder sorts Path objects (part by part), MVTecAD path strings: 'a-b/2.png' comes after 'a/1.png' here
        kind, pairing = mask_pairing_problems(sorted(images["abnormal_dir"]), sorted(images["mask_dir"]))
        problems[kind] = pairing
    if every_folder_read and ValSplitMode(datamodule.val_split_mode) == ValSplitMode.FROM_TEST:
        problems["splits"] += empty_test_split(datamodule, images)
    lossy = sorted(mask for mask in images["mask_dir"] if mask.suffix.lower() in (".jpg", ".jpeg"))
    if lossy and (lossy[0], len(lossy)) not in _NAMED_JPEG_MASKS:  # once: train checks at fit, then at test
        _NAMED_JPEG_MASKS.add((lossy[0], len(lossy)))
        logger.warning(
            "%s (%d of %d masks are JPEG): anomalib reads any mask value above 0 as defect, so JPEG's compression "
            "rings around each defect count too (a walkthrough's masks: 6391 pixels where 4272 were drawn), and "
            "pixel metrics are measured against larger defects than drawn. Fix: save the masks as PNG (lossless); "
            "TextureAD reads a JPEG mask at half scale.",
            lossy[0],
            len(lossy),
            len(images["mask_dir"]),
        )
    if any(problems.values()):
        where = Path(datamodule.root).resolve() if datamodule.root is not None else "Folder"
        raise FolderLayoutError(
            layout_message(f"{where}: anomalib's Folder cannot read this dataset as given", problems, FIXES)
        )
    return images


def _images_in(
    folder: str | Path, root: str | Path | None, setting: str, extensions: tuple[str, ...], problems: dict
) -> tuple[list[Path], str | None]:
    """The images Folder would list under ``folder``, resolved as Folder resolves it (a link followed, a
    non-printable character refused, so both lists sort alike), or the folder problem that stops it; the linked
    folders under it, which Folder does not look into, are added to ``problems["links"]``, a letter Folder refuses
    to ``problems["names"]``."""
    if letters := refused_letters(resolve_path(folder, root)):  # printable ASCII only: an 'ä' above too
        problems["names"].append(f"{resolve_path(folder, root)}: holds {letters!r} (--data.{setting})")
        return [], None
    try:
        path = validate_and_resolve_path(folder, root)
    except FileNotFoundError:
        return [], f"{resolve_path(folder, root)}: no such folder (--data.{setting})"
    except (OSError, ValueError) as error:
        return [], f"{error} (--data.{setting})"
    if not path.is_dir():
        return [], f"{path}: not a folder (--data.{setting})"
    found = [file for file in path.glob("**/*") if file.suffix.lower() in extensions and not file.is_dir()]
    problems["links"] += unread_linked_folders(path, extensions, f"--data.{setting}", "Folder")
    if not found:
        return [], f"{path}: no image in it (--data.{setting}; files ending {', '.join(sorted(set(extensions)))})"
    return found, None


def refused_letters(path: Path) -> str:
    """The letters of ``path`` anomalib's path check refuses (it takes printable ASCII only and calls the rest
    "non-printable"), or ``""``."""
    if not contains_non_printable_characters(path):
        return ""
    return "".join(sorted({char for char in str(path) if not " " <= char <= "~"}))


def unread_linked_folders(folder: Path, extensions: tuple[str, ...], where: str, reader: str) -> list[str]:
    """The linked folders under ``folder`` that hold images: ``glob("**/*")``, anomalib's listing, does not go into
    a linked folder, so its images were left out without a word (a training folder made of one link: none read)."""
    problems = []
    for link in sorted(path for path in folder.glob("**/*") if path.is_symlink() and path.is_dir()):
        count = sum(
            Path(name).suffix.lower() in extensions for _, _, names in os.walk(link, followlinks=True) for name in names
        )
        if count:
            problems.append(f"{link}: a linked folder in {where}; {reader} does not look into it ({count} images)")
    return problems


def shared_files(images: dict[str, list[Path]]) -> list[str]:
    """Files two settings both list (one folder inside another): Folder reads them as both, without a word (training
    images tested, masks taken for defect images, an image as its own mask)."""
    problems = []
    for i, first in enumerate(FOLDER_SETTINGS):
        for second in FOLDER_SETTINGS[i + 1 :]:
            if shared := sorted(set(images[first]) & set(images[second])):
                count = f"{len(shared)} such file{'s' * (len(shared) > 1)}"
                problems.append(
                    f"{shared[0]}: listed by both --data.{first} and --data.{second} ({count}), so Folder would read "
                    "them as both (a folder inside another lists its files too)"
                )
    return problems


def empty_test_split(datamodule: Folder, images: dict[str, list[Path]]) -> list[str]:
    """The validation split drawn from a test split of no image, or nothing. Without good test images Folder moves
    ``test_split_ratio`` of the good training images to the test split, rounded down as anomalib's ``random_split``
    rounds (4 images and the default 0.2: none)."""
    mode = TestSplitMode(datamodule.test_split_mode)
    good = len(images["normal_test_dir"])
    if not good and mode != TestSplitMode.NONE and datamodule.test_split_ratio is not None:
        good = math.floor(len(images["normal_dir"]) * datamodule.test_split_ratio)
    # from_dir keeps the good test images with the defects; synthetic makes its defects from the good ones; none
    # drops the good ones (anomalib's _create_test_split takes them out and adds them back only in those two modes)
    test = {TestSplitMode.FROM_DIR: good + len(images["abnormal_dir"]), TestSplitMode.SYNTHETIC: good}.get(
        mode, len(images["abnormal_dir"])
    )
    if test:
        return []
    why = (
        "test_split_mode none keeps only the defect images, --data.abnormal_dir, and there are none"
        if mode == TestSplitMode.NONE
        else f"no --data.abnormal_dir or --data.normal_test_dir images, and test_split_ratio "
        f"{datamodule.test_split_ratio} of {len(images['normal_dir'])} good training images is none"
    )
    return [f"the test split holds no image ({why}), and val_split_mode from_test draws the validation images from it"]


def mask_pairing_problems(
    defects: Sequence[Path], masks: Sequence[Path], reader: str = "Folder"
) -> tuple[str, list[str]]:
    """``("masks", ...)``: each defect image no mask names, each mask naming no defect image, one mask for several
    images; or ``("order", ...)``: where every name has its partner, each image the ``reader``'s (Folder's,
    MVTecAD's) sorted pairing would give another's mask (``10.png`` takes ``1_mask.png``), the masks named unlike
    the others first."""
    if len(defects) == len(masks) and all(_fits(image, mask) for image, mask in zip(defects, masks, strict=True)):
        return "masks", []  # Folder's own test passes; the name-by-name search below costs images x masks
    unmasked = [image for image in defects if not any(_fits(image, mask) for mask in masks)]
    unused = [mask for mask in masks if not any(_fits(image, mask) for image in defects)]
    problems = [f"{image}: no mask's name holds '{image.stem}'" for image in unmasked]
    problems += [f"{mask}: a mask whose name holds no defect image's" for mask in unused]
    if problems:
        return "masks", problems
    if len(masks) == 1 < len(defects):  # Folder's numpy gives this one mask to every defect image, without a word
        outcome = "Folder would give it to each" if reader == "Folder" else f"{reader} cannot pair them"
        return "masks", [f"{masks[0]}: the one mask of {len(defects)} defect images; {outcome}"]
    if len(defects) != len(masks):  # every name has a partner, the counts differ: a name inside several others
        if len(defects) > len(masks):  # 000_001.png holds 000 and 001; 025.png holds 025.png's and 025.jpg's
            shared = [(mask, [image for image in defects if _fits(image, mask)]) for mask in masks]
            named = [
                f"{mask}: the name holds {len(found)} defect images' ({', '.join(map(str, found))})"
                for mask, found in shared
                if len(found) > 1
            ]
        else:  # 1 is in 1_mask.png and 12_mask.png
            shared = [(image, [mask for mask in masks if _fits(image, mask)]) for image in defects]
            named = [
                f"{image}: its name is in {len(found)} masks' ({', '.join(map(str, found))})"
                for image, found in shared
                if len(found) > 1
            ]
        # the counts lead the first file's line, so the message's "(N problems)" counts files, not the heading
        return "masks", [f"{len(defects)} defect images but {len(masks)} masks; {named[0]}", *named[1:]]
    pairs = list(zip(defects, masks, strict=True))  # some pair fails Folder's test: every pair above passed it
    # every pair given another image's mask, those whose name holds the image's too (1.png with 10_mask.png): a
    # walkthrough's message counted 36 problems of 40
    crosswise = [
        f"{image}: {reader} pairs it with {mask} (both lists sorted by path), "
        + (f"not with its own {own}" if _fits(image, mask) else f"whose name does not hold '{image.stem}'")
        for image, mask in pairs
        if mask != (own := own_mask(image, masks))
    ]
    return "order", [*odd_mask_names(defects, masks), *crosswise]


def own_mask(image: Path, masks: Sequence[Path]) -> Path:
    """An image's own mask: the shortest name holding the image's (``1.png``: ``1_mask.png``, not ``10_mask.png``)."""
    return min((mask for mask in masks if _fits(image, mask)), key=lambda mask: len(mask.stem))


def odd_mask_names(defects: Sequence[Path], masks: Sequence[Path]) -> list[str]:
    """Masks named unlike the others (``mask_007.png`` among ``000_mask.png``...): each sorts away from its image's
    place and shifts the pairs between, so they are named first. The pattern of an image's :func:`own_mask`: its
    name with the image's replaced by ``{}``."""
    patterns = {}
    for image in defects:
        own = own_mask(image, masks)
        patterns[own] = own.stem.replace(image.stem, "{}", 1) + own.suffix
    common = Counter(patterns.values()).most_common(1)[0][0]  # ties: the first image's
    return [f"{mask}: named '{name}', the other masks '{common}'" for mask, name in patterns.items() if name != common]


def _fits(image: Path, mask: Path) -> bool:
    """Folder's test of a pair: the image's name (no extension) is inside the mask's."""
    return image.stem in mask.stem


def _as_list(paths: str | Path | Sequence[str | Path] | None) -> list[str | Path]:
    if paths is None:
        return []
    return [paths] if isinstance(paths, str | Path) else list(paths)


def layout_message(heading: str, problems: dict[str, list[str]], fixes: dict[str, str]) -> str:
    """``heading (N problems):``, the problems of each kind in ``fixes``' order (five listed, the others counted),
    then the fix of each kind found."""
    lines = []
    for kind in fixes:
        lines += problems[kind][:LISTED_PER_KIND]
        if len(problems[kind]) > LISTED_PER_KIND:
            lines.append(f"... and {len(problems[kind]) - LISTED_PER_KIND} more like these")
    count = sum(map(len, problems.values()))
    fix = "; ".join(fixes[kind] for kind in fixes if problems[kind])
    return f"{heading} ({count} problem{'s' * (count > 1)}):\n  - " + "\n  - ".join(lines) + f"\nFix: {fix}."

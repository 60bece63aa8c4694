"""Checks of the image files anomalib's own datasets read, before a run uses them.

``PredictDataset`` (``anomalib predict --data <folder>``) reads with
``PIL.Image.open(path).convert("RGB")``. Left alone, it passes over a non-image
file without a word, fails deep inside the dataloader on a damaged file, and
clips a 16-bit grey image to 8 bits (every value above 255 turns white), so the
scores are silently wrong. anomalib's ``Folder``, ``MVTecAD`` and other image
datasets read the same way for training and testing ("image file is truncated",
no file named), and resize a mask of another size to its image without a word.
This module turns each into a warning or an error that names the file and the
fix. Grey and RGBA images are converted to RGB by that reader (alpha dropped): a
recovery, documented in the README. (TextureAD names such files itself.) A flat
frame (a covered lens) is predicted, and named in a warning, as are images whose
drawn maps would overwrite each other and masks predicted as images.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from anomalib.data.utils.image import is_image_file
from anomalib.utils.path import generate_output_filename
from PIL import Image

from anomalib_adapted_moe.data.flat_frames import FLAT_FRAME_WARNING, is_flat_image
from anomalib_adapted_moe.data.folder_layout import refused_letters
from anomalib_adapted_moe.data.grouped_warnings import warn_alike
from anomalib_adapted_moe.data.misread_images import misread_warnings
from anomalib_adapted_moe.data.texture_ad import CorruptImageError, verify_image_file
from anomalib_adapted_moe.data.texture_ad.errors import MaskSizeMismatchError
from anomalib_adapted_moe.data.texture_ad.files import (
    decoded_image,
    mask_size_problem,
    mask_warning,
    read_binary_mask,
)

logger = logging.getLogger(__name__)

PREDICT_FIX = (
    "the file is damaged or incomplete (e.g. an interrupted copy or camera transfer); replace it with a good "
    "copy, or move it out of the folder being predicted."
)
DATASET_FIX = (
    "the file is damaged or incomplete (e.g. an interrupted copy or camera transfer); replace it with a good "
    "copy, or move it (and its mask) out of the dataset's folders."
)

#: the fix for a macOS metadata file named like an image (``._000.png``, AppleDouble, left by a copy from a Mac's
#: disk): it is no damaged image, and "replace it with a good copy" sent the user looking for one
APPLE_DOUBLE_FIX = (
    "it is a macOS metadata file (AppleDouble: '._' before an image's name, left by a copy from a Mac's disk), not an "
    "image; delete it (macOS: dot_clean <folder>; elsewhere: find <folder> -name '._*' -delete)."
)
#: the fix for a TIFF file PIL cannot decode: a valid one of a kind PIL does not read (32-bit float colour, an
#: unusual compression) was called damaged
TIFF_FIX = (
    "if it opens in an image viewer, it is a TIFF that anomalib's reader (PIL) cannot decode, such as 32-bit float "
    "colour or an unusual compression: save it as an 8-bit or 16-bit PNG or TIFF; else it is damaged or incomplete "
    "(e.g. an interrupted copy): replace it with a good copy."
)
MASK_FIX = (
    "the mask is damaged or incomplete (e.g. an interrupted copy); replace it with a good copy, or draw it again."
)

#: modes ``convert("RGB")`` clips to 8 bits instead of scaling
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class HighBitDepthImageError(ValueError):
    """A 16-bit (or 32-bit) grey image that anomalib's image reader would clip to 8 bits."""


def predicted_folder(image_files: Sequence[Path | str]) -> Path | None:
    """The folder ``anomalib predict`` was given: the deepest one holding every image; ``None`` for a single image,
    where it is unknown (a file or a folder of one may have been given)."""
    if len(image_files) < 2:
        return None
    return Path(os.path.commonpath([Path(path).parent for path in image_files]))


def skipped_files(image_files: Sequence[Path | str]) -> list[Path]:
    """Files under the :func:`predicted_folder` that ``PredictDataset`` passes over (not an image extension); none
    listed for a single image."""
    root = predicted_folder(image_files)
    if root is None:
        return []
    return sorted(path for path in root.rglob("*") if path.is_file() and not is_image_file(path))


def predict_path_problem(path: Path) -> str | None:
    """What anomalib's reader stops on before it lists the images to predict, with the fix; ``None`` for neither: a
    letter its path check refuses in the path given (it says "non-printable" of an 'ü') and a broken link among the
    images (it says "File not found" of the link and predicts none of the folder's images)."""
    if letters := refused_letters(path):
        return (
            f"{path}: holds {letters!r}, a letter anomalib's path check refuses (printable ASCII only: it says "
            "'non-printable'). Fix: rename the folder (or file) with ASCII letters, digits and punctuation only, or "
            "give the path from inside it (cd into it, --data .)."
        )
    links = [file for file in path.glob("**/*") if is_image_file(file) and file.is_symlink() and not file.exists()]
    if path.is_dir() and links:
        listed = ", ".join(f"{link} -> {os.readlink(link)}" for link in sorted(links)[:3])
        return (
            f"{path}: {len(links)} broken link(s) among its images ({listed}{', ...' * (len(links) > 3)}); "
            "anomalib's reader stops on the first and predicts none of the folder's images. Fix: restore the "
            "files they point to, or delete the links."
        )
    return None


def in_hidden_folders(image_files: Sequence[Path | str]) -> list[Path]:
    """Images under a hidden folder (``.ipynb_checkpoints``) of the :func:`predicted_folder`: anomalib predicts
    them too, so a notebook's copies were scored and counted without a word."""
    root = predicted_folder(image_files)
    if root is None:
        return []
    return [
        path for path in map(Path, image_files) if any(p.startswith(".") for p in path.relative_to(root).parts[:-1])
    ]


class BadPredictImagesError(CorruptImageError):
    """Several files of a predict folder or dataset would be misread: every one is named in one message."""


def check_predict_images(image_files: Sequence[Path | str]) -> None:
    """Warn about every file that will not be predicted; raise, naming every image that would be misread.

    Every image is decoded once, so damaged files stop the run before any
    prediction rather than in the middle of it, and all of them are named at once:
    clearing a folder one file per run is no way to work.

    Raises:
        CorruptImageError: one empty, truncated or undecodable file (the message names it and the fix).
        HighBitDepthImageError: one 16-bit or 32-bit grey image, which would be clipped to 8 bits.
        BadPredictImagesError: several such files, one line each.
    """
    for path in skipped_files(image_files):
        logger.warning("%s: skipped, not an image (anomalib predicts image files only).", path)
    _warn_about_some(
        mask_like_files(image_files),
        len(image_files),
        "look like defect masks",
        "they are scored as images. Fix: point --data at the images to inspect (e.g. a category's test folder), not "
        "at a folder holding their masks.",
    )
    _warn_about_some(
        in_hidden_folders(image_files),
        len(image_files),
        "lie in hidden folders",
        "they are predicted and counted too. Fix: predict a folder without them, or delete the copies (e.g. a "
        "notebook's .ipynb_checkpoints).",
    )
    errors, named = [], []
    for path in map(Path, image_files):
        try:
            named += _check_one(path)
        except (CorruptImageError, HighBitDepthImageError) as error:
            errors.append(error)
    warn_alike(named, len(image_files))
    _raise_for(errors, f"{len(errors)} of {len(image_files)} images cannot be predicted, so nothing was")


def overwritten_maps(
    image_files: Sequence[Path | str], dataset_name: str | None = None, category: str | None = None
) -> list[list[Path]]:
    """Groups of images whose drawn maps anomalib's ``ImageVisualizer`` writes to one file, so all but the last are
    lost: without a dataset name in the path it keeps only each image's own folder (``a/test/good/000.png`` and
    ``b/test/good/000.png`` both draw to ``images/good/000.png``; a walkthrough's category folder kept 69 of 78)."""
    by_output: dict[Path, list[Path]] = defaultdict(list)
    for path in image_files:
        output = generate_output_filename(path, ".", dataset_name=dataset_name, category=category, mkdir=False)
        by_output[output].append(Path(path))
    return [paths for paths in by_output.values() if len(paths) > 1]


#: how to keep every map of ``anomalib predict`` and of ``anomalib test``
OVERWRITTEN_MAPS_FIX = {
    "predict": "predict each subfolder in its own run (each with its own --default_root_dir), or give the images "
    "distinct names",
    "test": "give the images distinct names, or name the datamodule after a folder of their path (anomalib keeps "
    "the path below that folder)",
}


def warn_about_overwritten_maps(groups: list[list[Path]], num_images: int, stage: str = "predict") -> None:
    """Name, before ``stage`` ("predict" or "test") draws any map, the images whose maps :func:`overwritten_maps`
    found would overwrite each other."""
    if not groups:
        return
    lost = sum(len(paths) - 1 for paths in groups)
    first = groups[0]
    logger.warning(
        "%d of %d images would have their drawn maps overwritten by another image's: anomalib's visualizer keeps "
        "only each image's own folder name, so %s and %s (%d group(s) in all) draw to one file named %s; their "
        "scores are returned all the same. Fix: %s.",
        lost,
        num_images,
        first[0],
        first[1],
        len(groups),
        first[0].name,
        OVERWRITTEN_MAPS_FIX[stage],
    )


#: folder names and a name ending that mark defect masks in the layouts anomalib and this package read
MASK_FOLDERS = ("ground_truth", "masks", "mask")
MASK_SUFFIX = "_mask"


def mask_like_files(image_files: Sequence[Path | str]) -> list[Path]:
    """Images that look like defect masks (under a ``ground_truth`` or ``mask(s)`` folder, or named ``*_mask``):
    ``anomalib predict --data <category folder>`` scores every image under it, masks too, without a word. Only the
    folders under the predicted one count (a project kept under ``/data/masks/`` is not a mask)."""
    paths = [Path(path) for path in image_files]
    root = predicted_folder(paths)
    return [
        path
        for path in paths
        if path.stem.endswith(MASK_SUFFIX)
        or (root is not None and set(path.parent.relative_to(root).parts) & set(MASK_FOLDERS))
    ]


def _warn_about_some(found: list[Path], total: int, what: str, then: str) -> None:
    """One warning for the ``found`` of ``total`` images that ``what`` (e.g. "lie in hidden folders"), naming the
    first: "3 of 40 images <what> (<first> and 2 more): <then>"."""
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        logger.warning("%d of %d images %s (%s%s): %s", len(found), total, what, found[0], more, then)


def one_kind_of_test_image(dataset: object) -> str | None:
    """Why image metrics mean nothing on an anomalib test dataset of only defective or only good images (``None``
    if both are there): anomalib's image AUROC reads 0.0 on defects only (a Folder with no good test images: exit
    0, and only torchmetrics' "No negative samples" warning). TextureAD refuses such a split itself."""
    samples = getattr(dataset, "samples", None)
    if getattr(dataset, "checks_its_files", False) or samples is None or "label_index" not in samples:
        return None
    labels = list(samples["label_index"])
    kinds = set(map(int, labels))
    if len(kinds) != 1:
        return None
    if kinds == {1}:
        return (
            f"the test split holds only defective images ({len(labels)}): image AUROC and F1 are undefined (anomalib "
            "reports 0.0); pixel metrics stand. Fix: add good test images (Folder: --data.normal_test_dir, or "
            "good training images for test_split_ratio to take)."
        )
    return (
        f"the test split holds only good images ({len(labels)}): image and pixel AUROC are undefined. Fix: add "
        "defective test images (Folder: --data.abnormal_dir, with --data.mask_dir for pixel metrics)."
    )


#: (path, size, mtime) of each image and mask pair that passed :func:`check_dataset_files` in this process:
#: ``anomalib train`` tests on the images it checked before fitting, and a validation split taken from the test
#: set holds the same files, so a pair is decoded again only when a file changed since
_PASSED: set[tuple] = set()


def check_dataset_files(image_files: Sequence[Path | str], mask_files: Sequence[Path | str | None], split: str) -> None:
    """Raise before a run, naming every image or mask of a dataset split that anomalib would misread.

    Args:
        image_files: the split's images (an anomalib dataset's ``samples.image_path``).
        mask_files: each image's mask, or an empty or missing value for none (``samples.mask_path``).
        split: what the files are for, in the message ("training", "test").

    Raises:
        CorruptImageError: a damaged image or mask; HighBitDepthImageError: a 16-bit grey image;
        MaskSizeMismatchError: a mask of another size than its image; BadPredictImagesError: several of these.
    """
    check_dataset_splits({split: (image_files, mask_files)})


def check_dataset_splits(splits: Mapping[str, tuple[Sequence[Path | str], Sequence[Path | str | None]]]) -> None:
    """:func:`check_dataset_files` of several splits (``{"training": (images, masks), ...}``) in one message: a
    16-bit image among the training images and one among the test images were named one run after the other."""
    if not splits:
        return
    # a validation split that is the test split (same_as_test) holds the same files: each counted and named once
    pairs = list(
        dict.fromkeys(
            (str(image), _mask_or_none(mask))
            for images, masks in splits.values()
            for image, mask in zip(images, masks, strict=True)
        )
    )
    errors = _dataset_file_errors([image for image, _ in pairs], [mask for _, mask in pairs])
    names = list(splits)
    which = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    # a mask of another size or a damaged mask: "images cannot be read" sent a walkthrough to the images
    masks = any(isinstance(error, MaskSizeMismatchError) or MASK_FIX in str(error) for error in errors)
    what = "images or their masks" if masks else "images"
    _raise_for(errors, f"{len(errors)} of {len(pairs)} {which} {what} cannot be read as they are, so the run stopped")


def _dataset_file_errors(image_files: Sequence[Path | str], mask_files: Sequence[Path | str | None]) -> list:
    """The errors of :func:`check_dataset_files` for one split's images and masks (those passed are remembered)."""
    errors: list[ValueError] = []
    named: list[tuple[str, Path | str, str]] = []
    for image, mask in zip(map(Path, image_files), mask_files, strict=True):
        mask = _mask_or_none(mask)
        files_now = _file_states(image, mask)
        if files_now in _PASSED:
            continue
        try:
            width_height = verify_image_file(image, fix=decode_fix(image, DATASET_FIX))
            check_bit_depth(image)
            named += [(kind, image, warning) for kind, warning in misread_warnings(image, "reads")]
            if mask is not None:
                # the mask decoded with a mask's fix (image_size's default is a Texture AD copy's)
                problem = mask_size_problem(image, width_height, mask, verify_image_file(mask, fix=MASK_FIX))
                if problem is not None:
                    raise problem.to_error()
                good_folder = "Folder's --data.normal_test_dir, MVTecAD's test/good"
                # read as it is, as TextureAD reads it, but named
                if said := mask_warning(read_binary_mask(mask), mask, image, good_folder):
                    named.append((said[0], mask, said[1]))
        except (CorruptImageError, HighBitDepthImageError, MaskSizeMismatchError) as error:
            errors.append(error)
        else:
            if files_now is not None:
                _PASSED.add(files_now)
    warn_alike(named, len(image_files), sum(mask is not None for mask in map(_mask_or_none, mask_files)))
    return errors


def _mask_or_none(mask: object) -> str | Path | None:
    """A mask's path, or ``None`` for a normal image's (anomalib's samples hold NaN or "")."""
    return mask if isinstance(mask, str | Path) and str(mask) else None


def _file_states(*paths: Path | str | None) -> tuple | None:
    """Each file's path, size and modification time (``None`` for no file); ``None`` if one cannot be read."""
    states = []
    for path in paths:
        try:
            stat = None if path is None else os.stat(path)
        except OSError:
            return None
        states.append(None if stat is None else (str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(states)


def _raise_for(errors: list[ValueError], headline: str) -> None:
    """Raise the one error, or all of them in one message with each kind's fix said once."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        lines = [str(error).split(" Fix: ", 1)[0] for error in errors]
        fixes: dict[str, str] = {}  # one fix per kind of file, said once and named by its kind
        for error in errors:
            fix = str(error).split(" Fix: ", 1)[-1]
            kind = {HighBitDepthImageError: "high-bit-depth images", MaskSizeMismatchError: "masks of another size"}
            # a TIFF PIL cannot decode and a Mac's metadata file have their own fixes, not a damaged file's
            other = {TIFF_FIX: "TIFFs PIL cannot decode", APPLE_DOUBLE_FIX: "macOS metadata files"}.get(fix)
            fixes.setdefault(kind.get(type(error)) or other or "damaged files", fix)
        if len(fixes) == 1:
            fix = "Fix: " + next(iter(fixes.values()))
        else:
            fix = "Fix:\n" + "\n".join(f"  - {kind}: {text[:1].upper()}{text[1:]}" for kind, text in fixes.items())
        msg = f"{headline}:\n  - " + "\n  - ".join(lines) + "\n" + fix
        raise BadPredictImagesError(msg)


def _check_one(path: Path) -> list[tuple[str, Path, str]]:
    """Refuse a damaged or high-bit-depth predict image; ``(kind, path, warning)`` for a flat one (from the one decode
    that verified it) and for what anomalib's reader misreads of it."""
    with decoded_image(path, fix=decode_fix(path, PREDICT_FIX)) as image:
        refuse_high_bit_depth(str(path), image.mode)
        flat = is_flat_image(image.convert("RGB"))
    named = [(kind, path, warning) for kind, warning in misread_warnings(path, "scores")]
    return [("flat", path, FLAT_FRAME_WARNING % path)] * flat + named


def decode_fix(path: Path, fix: str) -> str:
    """``fix`` for a file that does not decode, or :data:`APPLE_DOUBLE_FIX` for a macOS metadata file, or
    :data:`TIFF_FIX` for a TIFF (by its first bytes)."""
    if path.name.startswith("._"):
        return APPLE_DOUBLE_FIX
    try:
        with open(path, "rb") as file:
            tiff = file.read(4) in (b"II*\x00", b"MM\x00*")
    except OSError:
        return fix
    return TIFF_FIX if tiff else fix


def check_bit_depth(path: Path) -> None:
    """Raise :class:`HighBitDepthImageError` for an image anomalib's reader would clip (reads the header only)."""
    with Image.open(path) as image:
        refuse_high_bit_depth(str(path), image.mode)


def refuse_high_bit_depth(name: str, mode: str, fix: str | None = None) -> None:
    """Raise :class:`HighBitDepthImageError` naming ``name`` (a file, or what the image is) when ``mode`` is one that
    ``convert("RGB")`` clips to 8 bits; ``fix`` replaces the fix for a file (an image in memory has other ways in)."""
    if mode in HIGH_BIT_DEPTH_MODES:
        # a float image's scale is its own: one in [0, 1] read black, and ">> 8" fails on floats
        fix = fix or (
            "convert it to 8-bit grey or RGB, scaling rather than clipping (e.g. `(numpy.asarray(image) >> 8)"
            ".astype('uint8')` for 16-bit), or use TextureAD, which scales 16-bit images."
            if mode != "F"
            else "convert it to 8-bit grey or RGB, scaling its range onto 0..255 (for values in [0, 1]: "
            "`(numpy.asarray(image) * 255).round().astype('uint8')`)."
        )
        clipped = "every value above 255 becomes white" if mode != "F" else "values in [0, 1] read black"
        msg = (
            f"{name}: a high-bit-depth grey image (PIL mode {mode}); anomalib's image reader clips it to 8 bits "
            f"({clipped}), so its scores would be wrong. Fix: {fix}"
        )
        raise HighBitDepthImageError(msg)

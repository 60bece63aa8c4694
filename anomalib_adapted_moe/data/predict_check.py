"""Checks of the files anomalib's ``PredictDataset`` reads (``anomalib predict --data <folder>``), before predicting.

``PredictDataset`` reads with ``PIL.Image.open(path).convert("RGB")``. Left alone,
it passes over a non-image file without a word, fails deep inside the
dataloader on a damaged file, and clips a 16-bit grey image to 8 bits (every
value above 255 turns white), so the scores are silently wrong. This module
turns each into a warning or an error that names the file and the fix.
Grey and RGBA images are converted to RGB by that reader (alpha dropped): a
recovery, documented in the README.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from anomalib.data.utils.image import is_image_file
from PIL import Image

from anomalib_adapted_moe.data.texture_ad import CorruptImageError, verify_image_file

logger = logging.getLogger(__name__)

PREDICT_FIX = (
    "the file is damaged or incomplete (e.g. an interrupted copy or camera transfer); replace it with a good "
    "copy, or move it out of the folder being predicted."
)

#: modes ``convert("RGB")`` clips to 8 bits instead of scaling
HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class HighBitDepthImageError(ValueError):
    """A 16-bit (or 32-bit) grey image that anomalib's image reader would clip to 8 bits."""


def skipped_files(image_files: Sequence[Path | str]) -> list[Path]:
    """Files under the predicted folder that ``PredictDataset`` passes over (not an image extension).

    The folder is the deepest one holding every image; with a single image it is
    unknown (a file or a folder of one may have been given), so nothing is listed.
    """
    if len(image_files) < 2:
        return []
    root = Path(os.path.commonpath([Path(path).parent for path in image_files]))
    return sorted(path for path in root.rglob("*") if path.is_file() and not is_image_file(path))


def running_the_anomalib_command() -> bool:
    """True inside the stock ``anomalib`` command (the rule the package's ``.pth`` hook uses)."""
    return os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "") in ("anomalib", "anomalib.exe")


class BadPredictImagesError(CorruptImageError):
    """Several files of a predict folder would be misread: every one is named in one message."""


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
    errors = []
    for path in map(Path, image_files):
        try:
            _check_one(path)
        except (CorruptImageError, HighBitDepthImageError) as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        lines = [str(error).split(" Fix: ", 1)[0] for error in errors]
        fixes: dict[str, str] = {}  # one fix per kind of file, said once and named by its kind
        for error in errors:
            kind = "high-bit-depth images" if isinstance(error, HighBitDepthImageError) else "damaged files"
            fixes.setdefault(kind, str(error).split(" Fix: ", 1)[-1])
        if len(fixes) == 1:
            fix = "Fix: " + next(iter(fixes.values()))
        else:
            fix = "Fix:\n" + "\n".join(f"  - {kind}: {text[:1].upper()}{text[1:]}" for kind, text in fixes.items())
        msg = (
            f"{len(errors)} of {len(image_files)} images cannot be predicted, so nothing was:\n  - "
            + "\n  - ".join(lines)
            + "\n"
            + fix
        )
        raise BadPredictImagesError(msg)


def _check_one(path: Path) -> None:
    verify_image_file(path, fix=PREDICT_FIX)
    check_bit_depth(path)


def check_bit_depth(path: Path) -> None:
    """Raise :class:`HighBitDepthImageError` for an image anomalib's reader would clip (reads the header only)."""
    with Image.open(path) as image:
        refuse_high_bit_depth(str(path), image.mode)


def refuse_high_bit_depth(name: str, mode: str) -> None:
    """Raise :class:`HighBitDepthImageError` naming ``name`` (a file, or what the image is) when ``mode`` is one that
    ``convert("RGB")`` clips to 8 bits."""
    if mode in HIGH_BIT_DEPTH_MODES:
        msg = (
            f"{name}: a high-bit-depth grey image (PIL mode {mode}); anomalib's image reader clips it to 8 bits "
            "(every value above 255 becomes white), so its scores would be wrong. Fix: convert it to 8-bit grey "
            "or RGB, scaling rather than clipping (e.g. `(numpy.asarray(image) >> 8).astype('uint8')` for 16-bit), "
            "or predict through TextureAD, which scales 16-bit images."
        )
        raise HighBitDepthImageError(msg)

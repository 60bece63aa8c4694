"""The sizes of a model's training images, and images far from them.

AdaptedMoE resizes every image to its input size, so it scores texture at the scale that resize gives the
training images. An image that shows more or less of the surface (another lens, distance or crop) reaches the
experts at another scale and was scored without a word: on the demo model, a centre crop of half the field of view
flagged 44 % of the good images instead of 5 %, a field twice as wide 56 % (README, "Bad input"). The same field at
another resolution scores as before (half the resolution: 5 %), and a file's size cannot tell the two apart, so an
image more than :data:`SIZE_FACTOR` off the training images' heights or widths is named in a warning, not refused.
The range is stored in the checkpoint and the OpenVINO IR (:data:`RT_INFO`), none in those written before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)

#: an image more than this factor taller, shorter, wider or narrower than every training image is named
SIZE_FACTOR = 1.5
#: where an exported IR keeps the range (``model.get_rt_info(RT_INFO)``: "min_height max_height min_width max_width")
RT_INFO = ["adapted_moe", "training_image_size"]

#: ``{"height": [min, max], "width": [min, max]}``, in pixels: plain values, safe for ``weights_only`` loading
SizeRange = dict[str, list[int]]


def file_size(path: Path | str) -> tuple[int, int] | None:
    """``(height, width)`` from the image file's header (nothing decoded); ``None`` where it cannot be read (a
    damaged file is named by the file checks)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError):
        return None
    return height, width


def size_range(sizes: Sequence[tuple[int, int] | None]) -> SizeRange | None:
    """The smallest and largest height and width of ``sizes`` (``None`` entries left out); ``None`` for none."""
    known = [size for size in sizes if size is not None]
    if not known:
        return None
    heights, widths = zip(*known, strict=True)
    return {"height": [min(heights), max(heights)], "width": [min(widths), max(widths)]}


def far_from(size: tuple[int, int], training: SizeRange) -> bool:
    """Whether an image of ``size`` (height, width) is more than :data:`SIZE_FACTOR` off ``training``."""
    return any(
        not low / SIZE_FACTOR <= length <= high * SIZE_FACTOR
        for length, (low, high) in zip(size, (training["height"], training["width"]), strict=True)
    )


def describe(training: SizeRange) -> str:
    """``256 x 256``, or ``200-256 x 300-512`` for training images of several sizes (height x width)."""
    return " x ".join(f"{low}" if low == high else f"{low}-{high}" for low, high in training.values())


def other_size_warning(subject: str, size: tuple[int, int], training: SizeRange) -> str:
    """The warning for an image far from the training sizes; ``subject`` names it (a file, "the image given")."""
    return (
        f"{subject} is {size[0]} x {size[1]} (height x width) against the training images' {describe(training)}, "
        f"more than {SIZE_FACTOR:g}x off. The model resizes every image to its input size: an image that shows more "
        "or less of the surface than the training images did (another lens, distance or crop) is scored at another "
        "texture scale (on the demo model, half the field of view flagged 44 % of the good images instead of 5 %); "
        "the same field at another resolution scores as before. Fix: if the field of view changed, crop the images "
        "to the training images' field or train on the new camera's images; if only the resolution changed, ignore "
        "this."
    )


def warn_about_other_sizes(image_files: Sequence[Path | str], training: SizeRange | None, stage: str) -> None:
    """Name the images of a ``stage`` (test, predict) far from the training sizes, in one warning."""
    if training is None:  # a checkpoint written before the range was stored
        return
    far = [(path, size) for path in image_files if (size := file_size(path)) and far_from(size, training)]
    if far:
        path, size = far[0]
        count = f"{len(far)} of {len(image_files)}"
        logger.warning(
            other_size_warning(
                f"{stage}: {count} images are far from the training sizes; the first, {path},", size, training
            )
        )


def record_in_ir(model, training: SizeRange | None) -> None:
    """Record ``training`` in an ``openvino.Model``'s rt_info (:data:`RT_INFO`), as :func:`ir_size_range` reads it."""
    if training is not None:
        model.set_rt_info(" ".join(str(length) for key in ("height", "width") for length in training[key]), RT_INFO)


def ir_size_range(model) -> SizeRange | None:
    """The training images' sizes an exported ``openvino.Model`` records (:data:`RT_INFO`); ``None`` in an IR
    exported before they were, or by another model."""
    if not model.has_rt_info(RT_INFO):
        return None
    min_height, max_height, min_width, max_width = map(int, model.get_rt_info(RT_INFO).astype(str).split())
    return {"height": [min_height, max_height], "width": [min_width, max_width]}

"""Grey images given to a model trained on colour ones, and colour images given to one trained on grey ones.

anomalib's reader puts a grey image's value on all three channels, a texture no colour-trained expert saw: on the
demo model, grey copies of its cloth test images flagged 39 % of the good ones instead of 5 % (README, "Bad input"),
without a word. Whether a model trained on colour or grey images is read from a sample of its training images and
stored in the checkpoint and the OpenVINO IR (:data:`RT_INFO`); ``anomalib test`` and ``predict`` name the sampled
images of the other kind, ``openvino_inferencer`` the first such frame. A training set of both kinds names nothing.
An image is grey when its pixels' channels lie within :data:`GREY_LEVELS` of each other (the 1 % most coloured aside:
JPEG's colour noise); colour photographs of grey metal and concrete spread 12 levels or more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from anomalib_adapted_moe.data.predict_check import flat_mask

logger = logging.getLogger(__name__)

#: the channel spread, in 8-bit grey levels, within which (for 99 % of its pixels) an image is grey
GREY_LEVELS = 2
#: images decoded of a training set or of a run's images (evenly spaced): the kind is the camera's, not the image's
SAMPLED = 16
#: pixels per image the spread is read on (a regular sample)
PIXELS = 4096
#: where an exported IR keeps the kind ("colour" or "grey")
RT_INFO = ["adapted_moe", "training_colour"]


def grey_mask(frames: np.ndarray, full_scale: float = 255.0, flat: np.ndarray | None = None) -> np.ndarray:
    """Which of ``frames`` (N x 3 x pixels; ``full_scale`` the 8-bit white: 255, or 1 for [0, 1]) are grey; a flat
    frame (a covered lens; ``flat``, else :func:`.predict_check.flat_mask`) is named as such, not as grey. Counted,
    not a quantile: the inferencer checks every frame (0.19 ms a frame of 256 x 256 with a quantile)."""
    sample = frames[:, :, :: max(1, frames.shape[2] // PIXELS)]
    coloured = (sample.max(axis=1) - sample.min(axis=1)) > (GREY_LEVELS + 1e-3) * full_scale / 255
    grey = coloured.mean(axis=1) <= 0.01
    return grey & ~(flat_mask(frames, full_scale) if flat is None else flat)


def is_grey_file(path: Path | str) -> bool | None:
    """Whether the image file is grey as anomalib's reader makes it RGB; ``None`` where it cannot be read (a damaged
    file is named by the file checks)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError):
        return None
    return bool(grey_mask(pixels.reshape(1, -1, 3).transpose(0, 2, 1))[0])


def sampled(files: Sequence[Path | str]) -> list[Path | str]:
    """Up to :data:`SAMPLED` of ``files``, evenly spaced."""
    step = max(1, len(files) // SAMPLED)
    return list(files[::step][:SAMPLED])


def training_colour(files: Sequence[Path | str]) -> str | None:
    """ "colour" or "grey": the kind of every sampled training image; ``None`` for both kinds or none readable."""
    kinds = {"grey" if grey else "colour" for path in sampled(files) if (grey := is_grey_file(path)) is not None}
    return kinds.pop() if len(kinds) == 1 else None


def colour_warning(subject: str, grey: bool) -> str:
    """The warning for an image of the other kind; ``subject`` names it (a file, "the image given")."""
    kind, trained = ("grey", "colour") if grey else ("colour", "grey")
    reason = (
        "anomalib's reader puts its grey value on all three channels, a texture no expert saw (on the demo model, grey "
        "copies of good images were flagged 39 % of the time instead of 5 %)"
        if grey
        else "its colours are a texture no expert saw"
    )
    return (
        f"{subject} {kind}, but the model was trained on {trained} images: {reason}. Fix: give the {trained} images "
        f"the line's camera takes, or train on {kind} images."
    )


def warn_about_other_colour(image_files: Sequence[Path | str], trained: str | None, stage: str) -> None:
    """Name the sampled images of a ``stage`` (test, predict) of the other kind than the training images."""
    if trained is None:  # both kinds in training, or a checkpoint written before the kind was stored
        return
    sample = sampled(image_files)
    other = [path for path in sample if is_grey_file(path) == (trained == "colour")]
    if other:
        subject = f"{stage}: {len(other)} of {len(sample)} sampled images are"
        logger.warning(colour_warning(subject, trained == "colour") + f" The first: {other[0]}.")


def ir_training_colour(model) -> str | None:
    """The training images' kind an exported ``openvino.Model`` records (:data:`RT_INFO`); ``None`` in an IR
    exported before it was, or by another model."""
    return model.get_rt_info(RT_INFO).astype(str) if model.has_rt_info(RT_INFO) else None

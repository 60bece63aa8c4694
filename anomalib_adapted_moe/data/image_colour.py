"""Grey images given to a model trained on colour ones, and colour images given to one trained on grey ones.

anomalib's reader puts a grey image's value on all three channels, a texture no colour-trained expert saw: on the
demo model, grey copies of its cloth test images flagged 39 % of the good ones instead of 5 % (README, "Bad input"),
without a word. Whether a model trained on colour or grey images is read from a sample of its training images and
stored in the checkpoint and the OpenVINO IR (:data:`RT_INFO`); ``anomalib test`` and ``predict`` name the sampled
images of the other kind, ``openvino_inferencer`` the first such frame. A training set of both kinds names nothing,
nor does a flat frame (a covered lens: it has its own warning).
An image is grey when its pixels' channels lie within :data:`GREY_LEVELS` of each other (the 1 % most coloured aside:
JPEG's colour noise); colour photographs of grey metal and concrete spread 12 levels or more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from anomalib_adapted_moe.data.flat_frames import flat_mask, is_flat_image, pixel_sample

logger = logging.getLogger(__name__)

#: the channel spread, in 8-bit grey levels, within which (for 99 % of its pixels) an image is grey
GREY_LEVELS = 2
#: images decoded of a training set or of a run's images (evenly spaced): the kind is the camera's, not the image's
SAMPLED = 16
#: pixels per image the spread is read on (a regular sample)
PIXELS = 4096
#: where an exported IR keeps the kind ("colour" or "grey")
RT_INFO = ["adapted_moe", "training_colour"]
#: PIL modes that hold one channel: grey without decoding (a 16-bit one would read flat once made 8-bit RGB)
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def kinds(frames: np.ndarray, full_scale: float = 255.0, flat: np.ndarray | None = None) -> list[str | None]:
    """ "grey", "colour" or ``None`` for each of ``frames`` (N x 3 x pixels; ``full_scale`` the 8-bit white: 255, or
    1 for [0, 1]); ``None`` for a flat frame (a covered lens: ``flat``, else :func:`.flat_frames.flat_mask`), which
    is named as such. Counted, not a quantile: the inferencer checks every frame (0.19 ms a 256 x 256 frame with a
    quantile, 0.02 counted)."""
    sample = frames[:, :, :: max(1, frames.shape[2] // PIXELS)]
    coloured = (sample.max(axis=1) - sample.min(axis=1)) > (GREY_LEVELS + 1e-3) * full_scale / 255
    grey = coloured.mean(axis=1) <= 0.01
    flat = flat_mask(frames, full_scale) if flat is None else flat
    return [None if is_flat else "grey" if is_grey else "colour" for is_grey, is_flat in zip(grey, flat, strict=True)]


def file_kind(path: Path | str) -> str | None:
    """:func:`kinds` of an image file as anomalib's reader makes it RGB, a one-channel mode grey without decoding;
    ``None`` for a flat one or one that cannot be read (a damaged file is named by the file checks)."""
    try:
        with Image.open(path) as image:
            if image.mode in GREY_MODES:
                return None if is_flat_grey(image) else "grey"
            image.draft("RGB", (512, 512))  # a JPEG decoded at a fraction of its size: 4096 pixels are read
            rgb = image.convert("RGB")
            if is_flat_image(rgb):
                return None
            return kinds(pixel_sample(rgb), flat=np.zeros(1, bool))[0]
    except (OSError, ValueError):
        return None


def is_flat_grey(image: Image.Image) -> bool:
    """:func:`.flat_frames.flat_mask` of a one-channel image on its own full scale (a covered lens on a 16-bit
    camera is flat, not grey), on a regular sample of its pixels."""
    band = np.asarray(image.getchannel(0) if image.mode == "LA" else image, dtype=np.float32).reshape(-1)
    full_scale = {"1": 1.0, "L": 255.0, "LA": 255.0}.get(image.mode, 65535.0)  # the I;16 family and I
    if image.mode == "F":
        full_scale = 1.0 if band.max() <= 1 else 255.0
    sample = band[:: max(1, band.size // (4 * PIXELS))].reshape(1, 1, -1)
    return bool(flat_mask(np.broadcast_to(sample, (1, 3, sample.shape[2])), full_scale)[0])


def sampled(files: Sequence[Path | str]) -> list[Path | str]:
    """Up to :data:`SAMPLED` of ``files``, evenly spaced from the first to the last (sorted lists group a camera's)."""
    if not len(files):
        return []
    return [files[int(index)] for index in np.unique(np.linspace(0, len(files) - 1, SAMPLED).round())]


def training_colour(files: Sequence[Path | str]) -> str | None:
    """ "colour" or "grey": the kind of every sampled training image (flat ones aside); ``None`` for both kinds or
    none known."""
    found = {kind for path in sampled(files) if (kind := file_kind(path)) is not None}
    return found.pop() if len(found) == 1 else None


def colour_warning(subject: str, kind: str) -> str:
    """The warning for an image of ``kind`` given to a model trained on the other; ``subject`` names it."""
    if kind == "grey":
        reason = (
            "anomalib's reader puts its grey value on all three channels, a texture no expert saw (on the demo model, "
            "grey copies of good images were flagged 39 % of the time instead of 5 %)"
        )
        fix = "give the colour images the line's camera takes, or train on grey images"
    else:
        reason = "its colours make a texture no expert saw"
        fix = "give the grey images the line's camera takes (a colour frame made grey: PIL's convert('L')), or train "
        fix += "on colour images"
    trained = "colour" if kind == "grey" else "grey"
    return f"{subject} {kind}, but the model was trained on {trained} images: {reason}. Fix: {fix}."


def warn_about_other_colour(image_files: Sequence[Path | str], trained: str | None, stage: str) -> None:
    """Name the sampled images of a ``stage`` (test, predict) of the other kind than the training images."""
    if trained not in ("colour", "grey"):  # both kinds in training, or a checkpoint from before the kind was stored
        return
    other_kind = "grey" if trained == "colour" else "colour"
    sample = sampled(image_files)
    other = [path for path in sample if file_kind(path) == other_kind]
    if other:
        subject = f"{stage}: {len(other)} of {len(sample)} sampled images are"
        logger.warning(colour_warning(subject, other_kind) + f" The first: {other[0]}.")


def record_in_ir(model, trained: str | None) -> None:
    """Record ``trained`` in an ``openvino.Model``'s rt_info (:data:`RT_INFO`), as :func:`ir_training_colour` reads
    it."""
    if trained is not None:
        model.set_rt_info(trained, RT_INFO)


def ir_training_colour(model) -> str | None:
    """The training images' kind an exported ``openvino.Model`` records (:data:`RT_INFO`); ``None`` in an IR
    exported before it was, or by another model."""
    return model.get_rt_info(RT_INFO).astype(str) if model.has_rt_info(RT_INFO) else None

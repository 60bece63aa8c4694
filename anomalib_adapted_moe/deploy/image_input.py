"""Image arrays and PIL images read as anomalib's file reader reads image files, before anomalib's pre-processing.

anomalib's ``OpenVINOInferencer`` reads a file with ``PIL``'s ``convert("RGB")`` and scales it to [0, 1], but takes an
array or a PIL image as it comes and divides by 255 only where the maximum exceeds 1.
"""

from __future__ import annotations

import numpy as np

from anomalib_adapted_moe.data.flat_frames import flat_mask
from anomalib_adapted_moe.data.predict_check import refuse_high_bit_depth


class ImageDtypeError(ValueError):
    """An image array whose values anomalib's pre-processing would scale wrongly (integers other than 8-bit, floats
    outside [0, 1], NaN or infinite values)."""


class ImageShapeError(ValueError):
    """An image array of a shape anomalib's pre-processing would misread (an H x W x 2 array became a 256 x 2 image)."""


def rgb_in_unit_range(image: np.ndarray) -> np.ndarray:
    """An image array as anomalib's pre-processing expects it: RGB, 8-bit values scaled to [0, 1].

    anomalib divides by 255 only where the maximum exceeds 1, so a near-black 8-bit frame (values
    0 and 1: a covered lens, lights off) was read 255 times brighter, and a 16-bit array was never
    scaled; grey (H x W) and RGBA arrays failed with errors that named neither. Grey and RGBA become
    RGB as anomalib's file reader makes them (the grey value on every channel, alpha dropped).

    Floats must lie in [0, 1]: anomalib divided a frame on the 0..255 scale by 255 only where its maximum exceeded 1
    (a dark one was read up to 255 times brighter), and an all-NaN frame scored like a normal image.
    """
    channels_last = image.ndim in (3, 4) and image.shape[-1] in (1, 3, 4)
    channels_first = image.ndim in (3, 4) and image.shape[-3] == 3  # anomalib takes 3 x H x W as it is
    if image.size == 0 or not (image.ndim == 2 or channels_last or channels_first):
        msg = (
            f"an image array of shape {image.shape}: anomalib's inferencer reads only H x W (grey), H x W x 1, "
            "H x W x 3 (RGB), H x W x 4 (RGBA) or 3 x H x W arrays, or a batch of the last four (N first: grey "
            "frames as N x H x W x 1; an N x H x W stack is no batch, and one of 3 would read as one colour image). "
            "Fix: give the image in one of those shapes (grey with alpha, H x W x 2: image[..., 0]; grey frames "
            "stacked: np.stack(frames)[..., None])."
        )
        raise ImageShapeError(msg)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    elif not np.issubdtype(image.dtype, np.floating):
        msg = (
            f"an image array of {image.dtype}: anomalib's inferencer scales only by 255, so its scores would be "
            "wrong. Fix: give float32 in [0, 1] (divide by the sensor's full scale, e.g. 4095 for 12-bit or 65535 "
            "for 16-bit images) or uint8."
        )
        raise ImageDtypeError(msg)
    elif not np.isfinite(image).all():
        msg = (
            f"an image array of {image.dtype} holding NaN or infinite values: its scores would mean nothing. Fix: "
            "give finite values in [0, 1] (a failed capture or a division by zero upstream leaves NaN)."
        )
        raise ImageDtypeError(msg)
    elif image.min() < 0 or image.max() > 1:
        msg = (
            f"an image array of {image.dtype} with values from {image.min():g} to {image.max():g}: float images are "
            "read as [0, 1] (anomalib divides by 255 only where the maximum exceeds 1, so a dark frame on the 0..255 "
            "scale was read up to 255 times brighter). Fix: scale floats to [0, 1] (divide 0..255 values by 255; clip "
            "a resampling's overshoot with numpy.clip(image, 0, 1)), or give uint8."
        )
        raise ImageDtypeError(msg)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.ndim in (3, 4) and image.shape[-1] in (1, 4):
        return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    return image


def flat_frames(batch: np.ndarray) -> list[int]:
    """Indices of the frames of an N x 3 x H x W batch in [0, 1] that
    :func:`~anomalib_adapted_moe.data.flat_frames.flat_mask` finds flat: a covered lens, lights off, an
    overexposed or disconnected camera. The model scores textures, and the demo model passed black, white and grey
    frames as good (0.28 to 0.31 against its 0.5 threshold)."""
    return [int(index) for index in np.flatnonzero(flat_mask(batch.reshape(*batch.shape[:2], -1), full_scale=1.0))]


def rgb_pil_image(image):
    """A PIL image in RGB, as anomalib's file reader makes it: anomalib takes a PIL image's raw values, so grey and
    RGBA images failed and a palette image would give its indices; a 16-bit one, which ``convert`` would clip,
    raises :class:`~anomalib_adapted_moe.data.predict_check.HighBitDepthImageError`."""
    refuse_high_bit_depth(
        "a PIL image",
        image.mode,
        fix="give its values as a float32 array in [0, 1] instead, which is read as it is (numpy.asarray(image, "
        "numpy.float32) / 65535 for 16-bit, or divided by the sensor's full scale, e.g. 4095 for 12-bit).",
    )
    return image.convert("RGB")  # the current frame, as the caller has it (its file's pages: the inferencer's)

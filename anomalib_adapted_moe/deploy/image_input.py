"""Image arrays and PIL images read as anomalib's file reader reads image files, before anomalib's pre-processing.

anomalib's ``OpenVINOInferencer`` reads a file with ``PIL``'s ``convert("RGB")`` and scales it to [0, 1], but takes an
array or a PIL image as it comes and divides by 255 only where the maximum exceeds 1.
"""

from __future__ import annotations

import numpy as np

from anomalib_adapted_moe.data.predict_check import refuse_high_bit_depth


class ImageDtypeError(ValueError):
    """An image array whose values anomalib's pre-processing would scale wrongly (integers other than 8-bit)."""


def rgb_in_unit_range(image: np.ndarray) -> np.ndarray:
    """An image array as anomalib's pre-processing expects it: RGB, 8-bit values scaled to [0, 1].

    anomalib divides by 255 only where the maximum exceeds 1, so a near-black 8-bit frame (values
    0 and 1: a covered lens, lights off) was read 255 times brighter, and a 16-bit array was never
    scaled; grey (H x W) and RGBA arrays failed with errors that named neither. Grey and RGBA become
    RGB as anomalib's file reader makes them (the grey value on every channel, alpha dropped).
    """
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    elif not np.issubdtype(image.dtype, np.floating):
        msg = (
            f"an image array of {image.dtype}: anomalib's inferencer scales only by 255, so its scores would be "
            "wrong. Fix: give float32 in [0, 1] (divide by the sensor's full scale, e.g. 4095 for 12-bit or 65535 "
            "for 16-bit images) or uint8."
        )
        raise ImageDtypeError(msg)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.ndim in (3, 4) and image.shape[-1] in (1, 4):
        return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    return image


def rgb_pil_image(image):
    """A PIL image in RGB, as anomalib's file reader makes it: anomalib takes a PIL image's raw values, so grey and
    RGBA images failed and a palette image would give its indices; a 16-bit one, which ``convert`` would clip,
    raises :class:`~anomalib_adapted_moe.data.predict_check.HighBitDepthImageError`."""
    refuse_high_bit_depth("a PIL image", image.mode)
    return image.convert("RGB")

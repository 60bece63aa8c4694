"""Flat frames: images with no texture to inspect (a covered lens, lights off, an overexposed or disconnected camera).

The model scores textures and passed black, white and grey frames as good, so every reader of a run's images names
them: ``anomalib predict`` and test, ``openvino_inferencer``, the variant level command.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: a frame whose every channel spans at most this many 8-bit grey levels holds no texture to inspect: a covered lens,
#: lights off, an overexposed or disconnected camera; the demo model passed black, white and grey frames as good
FLAT_LEVELS = 2
#: the share of a channel's darkest and of its brightest pixels left out of its span, so a stuck pixel or a
#: camera's timestamp overlay does not hide a covered lens
FLAT_OUTLIERS = 0.005
#: the warning for such a frame, a logging format (``%s``: the file, or which frame)
FLAT_FRAME_WARNING = (
    f"%s: {100 - 200 * FLAT_OUTLIERS:g} %% of the pixels within {FLAT_LEVELS} grey levels (a covered lens, lights off, "
    "an overexposed or disconnected camera?): the model scores textures and may pass it as good. Fix: check the "
    "camera; catch flat frames before the model."
)
#: pixels per channel the span is read on (a regular sample of a larger frame): the check runs on every frame an
#: inferencer scores, and a quantile of every pixel took 65 ms for a batch of 32 frames of 256 x 256
FLAT_SAMPLE = 4096


def flat_mask(frames: np.ndarray, full_scale: float = 255.0) -> np.ndarray:
    """Which of ``frames`` (N x 3 x pixels, ``full_scale`` the 8-bit white: 255 for grey levels, 1 for [0, 1]) are
    flat: every channel spans at most :data:`FLAT_LEVELS` grey levels, the :data:`FLAT_OUTLIERS` darkest and
    brightest of its pixels aside. A frame flat from its darkest to its brightest pixel is found without sampling."""
    limit = (FLAT_LEVELS + 1e-3) * full_scale / 255
    flat = ((frames.max(axis=2) - frames.min(axis=2)) <= limit).all(axis=1)
    rest = np.flatnonzero(~flat)
    if len(rest):
        sample = frames[:, :, :: max(1, frames.shape[2] // FLAT_SAMPLE)][rest].astype(np.float32)
        low, high = np.quantile(sample, [FLAT_OUTLIERS, 1 - FLAT_OUTLIERS], axis=2)
        flat[rest] = ((high - low) <= limit).all(axis=1)
    return flat


def is_flat_image(rgb: Image.Image) -> bool:
    """:func:`flat_mask` of an RGB PIL image: its exact extremes from PIL, then the span on :func:`pixel_sample`
    (every pixel of a 5-megapixel frame took 140 ms in numpy)."""
    if all(high - low <= FLAT_LEVELS for low, high in rgb.getextrema()):
        return True
    return bool(flat_mask(pixel_sample(rgb))[0])


def pixel_sample(rgb: Image.Image, pixels: int = 4 * FLAT_SAMPLE) -> np.ndarray:
    """An RGB PIL image's pixels on a regular grid of about ``pixels`` (every one of a small image), as the
    1 x 3 x N frame :func:`flat_mask` reads."""
    step = max(1, int((rgb.width * rgb.height / pixels) ** 0.5))
    across = min(step, max(1, rgb.width // 16))  # a tall, thin image keeps columns beyond its first
    down = max(1, int(rgb.width * rgb.height / pixels / across))
    return np.asarray(rgb)[::down, ::across].reshape(1, -1, 3).transpose(0, 2, 1)

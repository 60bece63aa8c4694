"""Image files PIL's reader (anomalib's, and TextureAD's) misreads without a word: it takes the first page of a
multi-page TIFF or an animated image (a defect on page 2 passed), and the top 8 bits of a 16-bit colour one (a 12-bit
camera's data reads 16 times darker: a defect 0.92 -> 0.78). Named in warnings, not refused: the first page may be
the image, and a dark frame may be a dark scene.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from anomalib_adapted_moe.data.flat_frames import flat_mask, is_flat_image

#: the warning for a multi-page TIFF or an animated image (a logging format: the file, the frame count, what is
#: done with the first): anomalib's reader takes the first frame, and a defect on page 2 passed without a word
SEVERAL_FRAMES_WARNING = (
    "%s: holds %d frames (pages); %s %s only one. Fix: save each page or frame as an image of "
    "its own (PIL's ImageSequence.Iterator)."
)

#: a 16-bit colour file whose brightest value reads below this, of 255, after anomalib's reader kept the top 8
#: bits, is named: its data has fewer bits (a 12-bit camera's reads at most 15), so it is scored 16 times darker
DARK_HIGH_BIT_LEVEL = 32
#: the full scale a dark 16-bit file's data is judged flat on: a 12-bit camera's
TWELVE_BIT_SCALE = 4095.0
#: the warning for such a file (a logging format: the file, its brightest value)
DARK_HIGH_BIT_WARNING = (
    "%s: a 16-bit colour image whose brightest value reads %d of 255: %s keeps the top 8 of its 16 bits, so data of "
    "fewer bits (a 12-bit camera's) reads 16 times darker. Fix: scale it to 8 bits by the camera's full scale first "
    "(value * 255 / 4095 for 12-bit data)."
)


def full_frames(image: Image.Image) -> int:
    """The frames (pages) of an image a person would inspect: a camera JPEG's MPO preview and a TIFF's
    reduced-resolution pages (thumbnails; NewSubfileType bit 0) aside."""
    frames = getattr(image, "n_frames", 1)
    if image.format == "MPO":
        return 1
    if image.format == "TIFF" and frames > 1:
        current, count = image.tell(), 0
        for page in range(frames):
            image.seek(page)
            count += not image.tag_v2.get(254, 0) & 1
        image.seek(current)
        return count
    return frames


def misread_warnings(path: Path, done: str, reader: str = "anomalib's reader") -> list[tuple[str, str]]:
    """``(kind, warning)`` for what ``reader`` (PIL's first frame, made 8-bit RGB) misreads silently in an image file:
    a multi-page or animated one ("pages", :data:`SEVERAL_FRAMES_WARNING`; ``done``: "scores", "reads"; "damaged
    pages" for one whose later pages cannot be read), and a 16-bit colour one that reads dark, a flat one aside
    ("dark", :data:`DARK_HIGH_BIT_WARNING`)."""
    warnings = []
    with Image.open(path) as image:
        try:
            frames = full_frames(image)
        except (OSError, ValueError, EOFError, SyntaxError) as error:  # a damaged later page: PIL's SyntaxError
            frames = 1
            unread = f"{path}: its later pages cannot be read ({type(error).__name__}: {error}); {reader} "
            unread += f"{done} its first only. Fix: copy the file again, or save each page as an image of its own."
            warnings.append(("damaged pages", unread))  # not grouped with the intact files of several pages
        raw = image.tile[0][3] if image.tile else ""
        sixteen_bit = image.mode in ("RGB", "RGBA") and ";16" in str(raw[0] if isinstance(raw, tuple) else raw)
        rgb = image.convert("RGB") if sixteen_bit else None
        brightest = max(high for _, high in rgb.getextrema()) if rgb is not None else 255
        if brightest < DARK_HIGH_BIT_LEVEL:  # a flat frame (a covered lens) has its own warning
            flat = flat_at_twelve_bits(path)
            brightest = 255 if (is_flat_image(rgb) if flat is None else flat) else brightest
    if frames > 1:
        warnings.append(("pages", SEVERAL_FRAMES_WARNING % (path, frames, reader, done)))
    if brightest < DARK_HIGH_BIT_LEVEL:
        warnings.append(("dark", DARK_HIGH_BIT_WARNING % (path, brightest, reader)))
    return warnings


def flat_at_twelve_bits(path: Path) -> bool | None:
    """Whether a 16-bit colour file's own values are flat on a 12-bit camera's scale (:data:`TWELVE_BIT_SCALE`), or
    ``None`` where OpenCV cannot read them. PIL keeps only their top 8 bits, in which an even 12-bit texture (1100 +-
    60 of 4095) reads flat: it was taken for a covered lens and not named dark."""
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None or values.dtype != np.uint16 or values.ndim != 3:
        return None
    channels = values[..., :3].reshape(-1, 3).T[None].astype(np.float32)  # 1 x 3 x pixels, as flat_mask reads
    return bool(flat_mask(channels, full_scale=TWELVE_BIT_SCALE)[0])

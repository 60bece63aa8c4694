"""Reading and verifying image and mask files; a file that cannot be decoded raises :class:`CorruptImageError`."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anomalib_adapted_moe.data.flat_frames import flat_mask
from anomalib_adapted_moe.data.misread_images import DARK_HIGH_BIT_LEVEL, TWELVE_BIT_SCALE, misread_warnings
from anomalib_adapted_moe.data.texture_ad.errors import (
    CorruptImageError,
    LayoutProblem,
    MaskSizeMismatchError,
    TextureADLayoutError,
    UnsupportedPixelFormatError,
)
from anomalib_adapted_moe.data.texture_ad.layout import HF_DATASET

CORRUPT_FIX = (
    "the file is damaged or incomplete (e.g. an interrupted download, extraction or generation); restore it from "
    f"where the copy came from (Texture AD: extract it again from the Hugging Face dataset {HF_DATASET}; "
    "SyntheticTextureAD: delete its category folder in the cache and it is generated again on next use; the real "
    "textures: build them again with `python -m anomalib_adapted_moe.data.real_textures`), or delete it (and its "
    "mask) if you accept losing it."
)
PIXEL_FORMAT_FIX = (
    "save it as an 8-bit or 16-bit image (PNG or TIFF), scaling its values into that range rather than clipping them."
)


def _corrupt(path: Path | str, err: BaseException, fix: str = CORRUPT_FIX) -> TextureADLayoutError:
    problem = LayoutProblem(CorruptImageError, path, f"cannot be read as an image ({type(err).__name__}: {err}).", fix)
    return problem.to_error()


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

#: the warning for a 16-bit grey file holding fewer bits (a logging format: the file, its brightest value)
DARK_GREY_WARNING = (
    "%s: a 16-bit grey image whose brightest value is %d of 65535: TextureAD scales 16-bit images by 65535, so data "
    "of fewer bits (a 12-bit camera's) reads 16 times darker. Fix: scale it to the full 16 bits by the camera's full "
    "scale first (value * 65535 // 4095 for 12-bit data)."
)


def open_image(path: Path | str) -> Image.Image:
    """``Image.open``, but a zero-byte file says so (PIL says "cannot identify image file", as for any non-image)."""
    if Path(path).stat().st_size == 0:
        raise OSError("the file is empty (0 bytes)")
    return Image.open(path)


def pixel_format_problem(path: Path | str, image: Image.Image) -> LayoutProblem | None:
    """The problem of an open image that ``convert("RGB")`` would misread and 65535 cannot scale, or ``None``.

    A 32-bit float image (mode ``F``) has no full scale (``convert`` clips it: 0.5 reads black); a mode ``I``
    image may hold 32-bit integers, which dividing by 65535 would clip (their values are read to tell).
    """
    if image.mode == "F":
        message = "is a 32-bit float image (PIL mode F): its values have no full scale to divide by."
    elif image.mode == "I" and ((values := np.asarray(image)).min() < 0 or values.max() > 65535):
        message = f"holds values from {values.min()} to {values.max()} (PIL mode I), beyond 16 bits."
    else:
        return None
    return LayoutProblem(UnsupportedPixelFormatError, path, message, PIXEL_FORMAT_FIX)


def read_image_tensor(path: Path | str) -> torch.Tensor:
    """Read an image as float RGB ``[3, H, W]`` in [0, 1]; raise :class:`CorruptImageError` naming the file.

    16-bit grey images are scaled by 65535 instead of being clipped to 255 (which is what a plain
    ``convert("RGB")`` does); 32-bit ones raise :class:`UnsupportedPixelFormatError`.
    """
    try:
        with open_image(path) as image:
            problem = pixel_format_problem(path, image)
            sixteen_bit = image.mode in _SIXTEEN_BIT_MODES
            array = np.asarray(image if sixteen_bit else image.convert("RGB"), dtype=np.float32)
    except Exception as err:
        raise _corrupt(path, err) from err
    if problem is not None:
        raise problem.to_error()
    if sixteen_bit:
        return torch.from_numpy(array / 65535.0).unsqueeze(0).expand(3, -1, -1).contiguous()
    return torch.from_numpy(array / 255.0).permute(2, 0, 1).contiguous()


def reading_warnings(path: Path | str) -> list[tuple[str, str]]:
    """``(kind, warning)`` for what TextureAD reads of an image file without a word: the first page of several, a
    16-bit colour file of fewer bits dark (:func:`~anomalib_adapted_moe.data.misread_images.misread_warnings`), and a
    16-bit grey one too, which TextureAD scales by 65535 (a 12-bit camera's reads at most 4095: "dark grey",
    :data:`DARK_GREY_WARNING`). Named by the datamodule's setup and ``--check``, grouped by kind."""
    try:  # a damaged file is named, with its fix, where it is decoded
        warnings = misread_warnings(Path(path), "reads", reader="TextureAD")
        with open_image(path) as image:
            if (
                image.mode in _SIXTEEN_BIT_MODES
                and (brightest := int(np.asarray(image).max())) < DARK_HIGH_BIT_LEVEL * 257
            ):
                # flat on a 12-bit camera's scale: a covered lens; an even 12-bit texture read flat on 65535's
                values = np.asarray(image, dtype=np.float32).reshape(1, 1, -1)
                if not flat_mask(np.broadcast_to(values, (1, 3, values.shape[2])), full_scale=TWELVE_BIT_SCALE)[0]:
                    warnings.append(("dark grey", DARK_GREY_WARNING % (path, brightest)))
    except (OSError, ValueError, SyntaxError, EOFError):
        return []
    return warnings


def read_binary_mask(path: Path | str) -> np.ndarray:
    """Read a mask of any format as a boolean ``[H, W]`` array: any non-zero pixel is defect.

    Handles grey, RGB(A) (any channel > 0; alpha ignored), palette (the palette
    colour of each index, so a dark but non-black label colour still counts) and
    16-bit masks. ``Image.convert("L")`` would lose e.g. a pure-blue value of 1.
    A JPEG mask is the exception: its compression leaves faint values around every
    label edge (a circle read 14 % too large), so there a pixel is defect above half scale.
    """
    try:
        with open_image(path) as image:
            lossy = image.format == "JPEG"
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            array = np.asarray(image)
            mode = image.mode
    except Exception as err:
        raise _corrupt(path, err) from err
    floor = 127 if lossy else 0  # JPEG is 8-bit
    if array.ndim == 3:
        if mode in {"RGBA", "RGBa", "LA", "La", "PA"}:
            array = array[..., :-1]  # alpha says nothing about the defect
        return (array > floor).any(axis=-1)
    return array > floor


#: a mask marking more than this share of its image is named: an inverted one (white for the good surface) marked
#: 96-99 % in a walkthrough, and pixel AUROC read 0.37 without a word
MOST_OF_THE_IMAGE = 0.5
#: ... and more than this share of its border pixels
MOST_OF_THE_BORDER = 0.5


def mask_warning(
    mask: np.ndarray, mask_path: Path | str, image: Path | str, good_folder: str = "test/good"
) -> tuple[str, str] | None:
    """``(kind, warning)`` for a defect image's ``mask`` (read by :func:`read_binary_mask`) that marks no pixel (its
    image label still says defect) or most of the image and its border (inverted?), or ``None``; ``good_folder``:
    where the layout keeps good test images (Folder's is its ``normal_test_dir``)."""
    if not mask.any():
        return "empty mask", (
            f"{mask_path}: the mask of the defect image {image} marks no pixel, so pixel metrics count its defect as "
            f"normal. Draw the defect in it, or move the image among the good test images ({good_folder}) if it has "
            "none."
        )
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    # a defect covering most of an object (MVTec AD's flipped metal nut) leaves the border clear; an inverted mask not
    if (share := float(mask.mean())) > MOST_OF_THE_IMAGE and border.mean() > MOST_OF_THE_BORDER:
        return "inverted mask", (
            f"{mask_path}: the mask of the defect image {image} marks {share:.0%} of it: an inverted mask (the good "
            "surface white, the defect black)? Pixel metrics would count the good surface as defect. Fix: invert it "
            "(PIL.ImageOps.invert), or leave it if the defect covers most of the image."
        )
    return None


def image_size(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` from the header; raise :class:`CorruptImageError` naming the file."""
    try:
        with open_image(path) as image:
            return image.size
    except Exception as err:
        raise _corrupt(path, err) from err


def mask_size_problem(
    image: Path | str,
    image_wh: tuple[int, int],
    mask: Path | str,
    mask_wh: tuple[int, int],
) -> LayoutProblem | None:
    """The problem for a mask whose size differs from its image's, or ``None``."""
    if tuple(image_wh) == tuple(mask_wh):
        return None
    return LayoutProblem(
        MaskSizeMismatchError,
        mask,
        f"mask is {mask_wh[0]}x{mask_wh[1]} but its image {image} is {image_wh[0]}x{image_wh[1]} (width x height).",
        "replace it with the mask made for this image, or resize it to the image size with nearest-neighbour "
        "interpolation.",
    )


def verify_image_file(path: Path, fix: str = CORRUPT_FIX) -> tuple[int, int]:
    """Fully decode ``path`` (``verify()`` then ``load()``); return ``(width, height)``.

    ``fix`` is the advice the error gives (the default suits a Texture AD copy).

    Raises:
        CorruptImageError: if the file is empty, not an image, or truncated.
    """
    with decoded_image(path, fix) as image:
        return image.size


def decoded_image(path: Path, fix: str = CORRUPT_FIX) -> Image.Image:
    """:func:`verify_image_file`'s decoded image, for a caller that reads its pixels too (one decode, not two).

    Raises:
        CorruptImageError: if the file is empty, not an image, or truncated.
    """
    try:
        with open_image(path) as image:
            image.verify()
        image = open_image(path)
        try:
            image.load()
        except BaseException:
            image.close()
            raise
        return image
    except Exception as err:
        raise _corrupt(path, err, fix) from err


def decode_problem(path: Path | str, image: bool) -> tuple[tuple[int, int] | None, LayoutProblem | None]:
    """Decode ``path`` fully: its ``(width, height)`` and what ``--check`` names of it, a damaged file (verified, so a
    bad checksum counts) or, for an ``image`` (a mask's values only say defect or not), a pixel format with no full
    scale."""
    try:
        size = verify_image_file(Path(path))
    except CorruptImageError as error:
        return None, error.problem
    if not image:
        return size, None
    with open_image(path) as opened:
        return size, pixel_format_problem(path, opened)


def pair_problems(image: Path | str, mask: Path | str | None = None) -> list[LayoutProblem]:
    """What ``--check`` names of this image and its mask: :func:`decode_problem` of each, and a mask of another
    size."""
    image_wh, problem = decode_problem(image, image=True)
    problems = [problem] if problem else []
    if mask:
        mask_wh, problem = decode_problem(mask, image=False)
        if problem:
            return [*problems, problem]
        if image_wh is not None and (problem := mask_size_problem(image, image_wh, mask, mask_wh)):
            problems.append(problem)
    return problems


def pairs_problems(pairs: Sequence[tuple[Path | str, Path | str | None]], workers: int = 4) -> list[LayoutProblem]:
    """:func:`pair_problems` of every pair, in order (threads: decoding releases the GIL)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [problem for problems in pool.map(lambda pair: pair_problems(*pair), pairs) for problem in problems]

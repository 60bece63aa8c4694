"""Texture AD: dataset and datamodule with the subclass of every image, and the check of a downloaded copy.

One module per concept; the datamodule and ``--check`` share them, so both
apply the same layout rules. Validate a copy with::

    python -m anomalib_adapted_moe.data.texture_ad --check ROOT [--category cloth]
"""

from anomalib_adapted_moe.data.texture_ad.check import CheckReport, check_category, run_check
from anomalib_adapted_moe.data.texture_ad.datamodule import TextureAD, TextureADDataset
from anomalib_adapted_moe.data.texture_ad.errors import (
    AmbiguousMaskError,
    CorruptImageError,
    EmptyTestSetError,
    EmptyTrainingSetError,
    LayoutProblem,
    MaskSizeMismatchError,
    MissingMaskError,
    OrphanMaskError,
    SplitFileError,
    TextureADLayoutError,
    TextureADNotFoundError,
    UnknownSubclassError,
    UnsupportedPixelFormatError,
    raise_first,
)
from anomalib_adapted_moe.data.texture_ad.files import (
    image_size,
    mask_size_problem,
    read_binary_mask,
    read_image_tensor,
    verify_image_file,
)
from anomalib_adapted_moe.data.texture_ad.locate import find_category_dir, not_found_message
from anomalib_adapted_moe.data.texture_ad.samples import SAMPLE_COLUMNS, make_texture_ad_samples
from anomalib_adapted_moe.data.texture_ad.scan import CategoryLayout, SubclassLayout, scan_category
from anomalib_adapted_moe.data.texture_ad.subclasses import resolve_subclasses

__all__ = [
    "SAMPLE_COLUMNS",
    "AmbiguousMaskError",
    "CategoryLayout",
    "CheckReport",
    "CorruptImageError",
    "EmptyTestSetError",
    "EmptyTrainingSetError",
    "LayoutProblem",
    "MaskSizeMismatchError",
    "MissingMaskError",
    "OrphanMaskError",
    "SplitFileError",
    "SubclassLayout",
    "TextureAD",
    "TextureADDataset",
    "TextureADLayoutError",
    "TextureADNotFoundError",
    "UnknownSubclassError",
    "UnsupportedPixelFormatError",
    "check_category",
    "find_category_dir",
    "image_size",
    "make_texture_ad_samples",
    "mask_size_problem",
    "not_found_message",
    "raise_first",
    "read_binary_mask",
    "read_image_tensor",
    "resolve_subclasses",
    "run_check",
    "scan_category",
    "verify_image_file",
]

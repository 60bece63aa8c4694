"""Procedural, seed-deterministic stand-in for Texture AD (cloth, wafer, metal).

Each category is a mixture of clearly different seen subclasses plus unseen
subclasses that are shifted versions of seen ones, with five defect families and
exact masks, written in the per-subclass MVTec layout. See
:func:`generate_synthetic_texture_ad`.
"""

from .catalog import SYNTHETIC_CATEGORIES, defect_kinds, subclass_specs
from .defects import DEFECT_FAMILIES
from .generate import generate_synthetic_texture_ad

__all__ = [
    "DEFECT_FAMILIES",
    "SYNTHETIC_CATEGORIES",
    "defect_kinds",
    "generate_synthetic_texture_ad",
    "subclass_specs",
]

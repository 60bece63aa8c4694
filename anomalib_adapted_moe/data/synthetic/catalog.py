"""The three synthetic categories: texture renderer, subclass tables, defect folder names.

The category index used in every seed is the position in SYNTHETIC_CATEGORIES,
never the position in a caller's list, so generating one category alone gives the
same bytes as generating it among all three.
"""

from __future__ import annotations

from types import ModuleType

from . import cloth, metal, wafer
from .defects import DEFECT_FAMILIES
from .subclasses import SubclassSpec, build_subclasses

SYNTHETIC_CATEGORIES: tuple[str, ...] = ("cloth", "wafer", "metal")

_MODULES: dict[str, ModuleType] = {"cloth": cloth, "wafer": wafer, "metal": metal}

# Folder name of each defect family; a crease is a fold in cloth/sheet metal, a wrinkle in a wafer film.
_FOLDER_OVERRIDES: dict[str, dict[str, str]] = {"wafer": {"fold": "wrinkle"}}


def check_category(category: str) -> str:
    if category not in _MODULES:
        raise ValueError(f"unknown synthetic category {category!r}; valid categories are {list(SYNTHETIC_CATEGORIES)}")
    return category


def category_module(category: str) -> ModuleType:
    """The module with ``render_texture``, ``BASES``, ``SHIFTS`` and ``variant``."""
    return _MODULES[check_category(category)]


def defect_kinds(category: str) -> dict[str, str]:
    """``{family: folder name}`` for the five defect families, in DEFECT_FAMILIES order."""
    overrides = _FOLDER_OVERRIDES.get(check_category(category), {})
    return {family: overrides.get(family, family) for family in DEFECT_FAMILIES}


def subclass_specs(category: str, num_subclasses: int = 8, num_unseen: int = 3) -> list[SubclassSpec]:
    """Seen subclasses first, then the unseen ones (each shifted from a seen one)."""
    module = category_module(category)
    return build_subclasses(module.BASES, module.SHIFTS, module.variant, num_subclasses, num_unseen)

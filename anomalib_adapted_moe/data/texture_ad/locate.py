"""Finding the Texture AD category folder, and the message that says where to get the data when it is missing."""

from __future__ import annotations

import logging
from pathlib import Path

from anomalib_adapted_moe.data.texture_ad.errors import TextureADNotFoundError
from anomalib_adapted_moe.data.texture_ad.layout import CHECK_COMMAND, HF_DATASET, HF_URL, LAYOUT_TEXT

logger = logging.getLogger(__name__)


def holds_subclasses(folder: Path) -> bool:
    """A category folder holds subclass folders with ``train/`` or ``test/`` in them."""
    return any((sub / "train").is_dir() or (sub / "test").is_dir() for sub in folder.iterdir() if sub.is_dir())


def not_found_message(root: Path, category: str | None = None, missing: Path | None = None) -> str:
    """Explain where Texture AD comes from and how to point ``root`` at it."""
    missing = missing or root
    available = ""
    if category is not None and root.is_dir():
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        available = f"\nFolders found in {root}: {names or 'none'}."
        if holds_subclasses(root):  # the category folder given as the root
            available += (
                f"\n{root} is itself a category folder (its subfolders hold train/ or test/). Fix: give its parent, "
                f"{root.parent}, as the root (--data.root) and {root.name!r} as the category (--data.category)."
            )
    state = "is a file, not a folder" if missing.is_file() else "does not exist"
    return (
        f"Texture AD not found: {missing} {state}.{available}\n"
        f"Texture AD is distributed as the Hugging Face dataset {HF_DATASET} ({HF_URL}); "
        "download the category archives (e.g. Cloth.zip, Wafer.zip) and extract them so that "
        "the folders follow this layout:\n"
        f"{LAYOUT_TEXT}\n"
        "Then pass the folder that contains the category folders as `root` "
        "(Python: TextureAD(root=..., category=...); CLI: --data.root ... --data.category ...), "
        f"and run `{CHECK_COMMAND} ROOT` once to validate the copy. "
        "To try the pipeline without downloading anything, use SyntheticTextureAD."
    )


def find_category_dir(root: Path | str, category: str) -> Path:
    """Return ``root/category``; accept a case-only difference (archives ship ``Cloth``, ``Wafer``)."""
    root = Path(root)
    if not root.is_dir():
        raise TextureADNotFoundError(not_found_message(root))
    exact = root / category
    if exact.is_dir():
        return exact
    matches = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == category.lower()]
    if len(matches) == 1:
        logger.info("Using %s for category %r (case-insensitive match).", matches[0], category)
        return matches[0]
    raise TextureADNotFoundError(not_found_message(root, category, missing=exact))

"""The data-to-model contract: which subclasses a datamodule trains on, in ``subclass_id`` order."""

from __future__ import annotations

from typing import Any


def seen_subclasses(datamodule: Any) -> list[str]:
    """``train_subclasses`` of a Texture AD datamodule (``subclass_id`` indexes it); ``[]`` for one without
    subclasses (anomalib's MVTecAD, Folder, ...) or no datamodule at all, where experts are discovered."""
    return list(getattr(datamodule, "train_subclasses", None) or [])

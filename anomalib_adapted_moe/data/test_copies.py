"""Test images that are byte-for-byte copies of training images (a folder copied into both, a line's good frames saved
twice): the model trained on them, so its test metrics read better than on new images, without a word. A walkthrough's
Folder whose 60 good test images were copies of training ones tested at image AUROC 0.966, exit 0.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

#: the warning (a logging format: the count, the test images, the first pair, "and N more", the fix's folders)
COPIES_WARNING = (
    "%d of %d test images are byte-for-byte copies of training images (%s is %s%s): the model trained on them, so the "
    "test metrics read better than they would on new images. Fix: keep the test images apart from the training ones "
    "(%s)."
)


def _size(path: Path | str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None  # a missing file is named by the file checks


def _digest(path: Path | str) -> str | None:
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    except OSError:
        return None


def copies_of_training_images(training: Sequence[Path | str], test: Sequence[Path | str]) -> list[tuple[str, str]]:
    """``(test image, training image)`` for each test image whose bytes are a training image's (the same path aside:
    refused elsewhere). Only files of a size both sets share are read, so a set of compressed images is barely
    read at all."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for path in map(str, training):
        if (size := _size(path)) is not None:
            by_size[size].append(path)
    digests: dict[str, str | None] = {}

    def digest(path: str) -> str | None:
        if path not in digests:
            digests[path] = _digest(path)
        return digests[path]

    copies = []
    for path in map(str, test):
        size = _size(path)
        for candidate in by_size.get(size, []) if size is not None else []:
            if candidate != path and digest(path) is not None and digest(path) == digest(candidate):
                copies.append((path, candidate))
                break
    return copies


def copies_warning(copies: list[tuple[str, str]], test_images: int, folders: str) -> str | None:
    """:data:`COPIES_WARNING` for :func:`copies_of_training_images`' pairs, or ``None`` for none; ``folders``: where
    the layout keeps each set (Folder's ``normal_test_dir`` and ``normal_dir``)."""
    if not copies:
        return None
    more = f", and {len(copies) - 1} more" if len(copies) > 1 else ""
    return COPIES_WARNING % (len(copies), test_images, copies[0][0], copies[0][1], more, folders)

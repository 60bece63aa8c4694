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


#: bytes read of every file that shares its size with one of the other set: uncompressed images (BMP, TIFF) of one
#: camera all share theirs, and 5000 of 3 MB were read whole
HEAD_BYTES = 64 * 1024


def _digest(path: Path | str, head: bool) -> str | None:
    """SHA-256 of the file's first :data:`HEAD_BYTES` (``head``) or of all of it; ``None`` if it cannot be read."""
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read(HEAD_BYTES) if head else file.read()).hexdigest()
    except OSError:
        return None


def copies_of_training_images(training: Sequence[Path | str], test: Sequence[Path | str]) -> list[tuple[str, str]]:
    """``(test image, training image)`` for each test image whose bytes are a training image's (the same path aside:
    refused elsewhere). Files are compared by size, then by their first :data:`HEAD_BYTES`, and read whole only
    when both match: a set of compressed images is barely read, one of uncompressed images 64 kB a file."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for path in map(str, training):
        if (size := _size(path)) is not None:
            by_size[size].append(path)
    digests: dict[tuple[str, bool], str | None] = {}

    def same(path: str, other: str, head: bool) -> bool:
        for file in (path, other):
            if (file, head) not in digests:
                digests[file, head] = _digest(file, head)
        return digests[path, head] is not None and digests[path, head] == digests[other, head]

    copies = []
    for path in map(str, test):
        size = _size(path)
        for candidate in by_size.get(size, []) if size is not None else []:
            if candidate != path and same(path, candidate, head=True) and same(path, candidate, head=False):
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

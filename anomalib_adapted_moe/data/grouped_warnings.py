"""Per-file warnings grouped by kind: one line naming the first file's problem, then how many more files share it.

A folder of 24 black frames printed 24 flat-frame warnings (each twice under the ``anomalib`` command, whose two log
handlers both print), and a 12-bit camera's set one line per file: the first file's warning says what and why, the
count and the next names say how widespread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

#: files named after the count, beyond which "and N more" is said
NAMED = 3


def grouped(named: Sequence[tuple[str, Path | str, str]], images: int, masks: int | None = None) -> list[str]:
    """One line per kind of ``(kind, file, warning)``, in first-seen order: the first file's warning, then "Likewise
    N more of the M images (<files>)"; a kind ending in "mask" counts among the ``masks`` (when given)."""
    by_kind: dict[str, list[tuple[Path | str, str]]] = {}
    for kind, path, warning in named:
        by_kind.setdefault(kind, []).append((path, warning))
    lines = []
    for kind, found in by_kind.items():
        warning, more = found[0][1], [str(path) for path, _ in found[1:]]
        if more:
            total, noun = (masks, "masks") if kind.endswith("mask") and masks is not None else (images, "images")
            rest = f" and {len(more) - NAMED} more" if len(more) > NAMED else ""
            warning += f" Likewise {len(more)} more of the {total} {noun} ({', '.join(more[:NAMED])}{rest})."
        lines.append(warning)
    return lines


def warn_alike(named: Sequence[tuple[str, Path | str, str]], images: int, masks: int | None = None) -> None:
    """Log :func:`grouped`'s lines."""
    for line in grouped(named, images, masks):
        logger.warning(line)

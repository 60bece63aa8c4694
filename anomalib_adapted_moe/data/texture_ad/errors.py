"""Errors of a Texture AD copy, and :class:`LayoutProblem`, the record each check produces.

Problems are collected rather than raised at once, so that ``--check`` can
report all of them in one run; the dataset raises the first one (mentioning how
many more there are) with :func:`raise_first`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalib_adapted_moe.data.texture_ad.layout import CHECK_COMMAND


class TextureADLayoutError(ValueError):
    """A Texture AD folder breaks the expected layout; the message names the file and the fix.

    ``problem`` holds the structured :class:`LayoutProblem` when the error was built from one.
    """

    problem: LayoutProblem | None = None


class CorruptImageError(TextureADLayoutError):
    """An image or mask cannot be decoded (truncated, zero bytes, not an image)."""


class MissingMaskError(TextureADLayoutError):
    """A defect image has no mask in ``ground_truth``."""


class OrphanMaskError(TextureADLayoutError):
    """A mask in ``ground_truth`` has no defect image."""


class AmbiguousMaskError(TextureADLayoutError):
    """A defect image matches more than one mask (or two images share one stem)."""


class MaskSizeMismatchError(TextureADLayoutError):
    """A mask's width and height differ from its image's."""


class UnsupportedPixelFormatError(TextureADLayoutError):
    """An image whose values have no range to scale to [0, 1] (32-bit float, or integers beyond 16 bits)."""


class UnknownSubclassError(TextureADLayoutError):
    """A requested subclass name (argument or ``split.json``) has no folder."""


class SplitFileError(TextureADLayoutError):
    """``split.json`` is not valid JSON or not of the form ``{"seen": [...], "unseen": [...]}``."""


class EmptyTrainingSetError(TextureADLayoutError):
    """There is nothing to train on (no training subclass, or one without images)."""


class EmptyTestSetError(TextureADLayoutError):
    """The selected test subclasses hold no test image at all."""


class TextureADNotFoundError(FileNotFoundError):
    """The dataset root or category folder does not exist."""


@dataclass(frozen=True)
class LayoutProblem:
    """One problem found in the layout: what is wrong with which file, and how to fix it."""

    error: type[TextureADLayoutError]
    path: Path | str
    message: str
    fix: str

    def __str__(self) -> str:
        """Render as ``<path>: <message> Fix: <fix>``, the line ``--check`` prints."""
        return f"{self.path}: {self.message} Fix: {self.fix}"

    def to_error(self, more: int = 0) -> TextureADLayoutError:
        """Build the exception to raise, mentioning how many further problems exist."""
        text = str(self)
        if more:
            text += f" ({more} more problem{'s' if more != 1 else ''}; run `{CHECK_COMMAND} ROOT` to list them all.)"
        error = self.error(text)
        error.problem = self
        return error


def raise_first(problems: Sequence[LayoutProblem]) -> None:
    """Raise the first problem as its exception type, if there is any."""
    if problems:
        raise problems[0].to_error(more=len(problems) - 1)

"""Items and batches that carry the subclass of every image.

The router of Adapted-MoE is trained on subclass labels and reports are made per
subclass, so the label must survive anomalib's collate, the Lightning loop and
the visualizer (which rebuilds items through ``item_class``).
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from anomalib.data.dataclasses import ImageBatch, ImageItem, NumpyImageBatch, NumpyImageItem


@dataclass
class _SubclassFields:
    """``subclass_id`` indexes the training subclasses; -1 marks one never seen in training."""

    subclass_id: torch.Tensor | np.ndarray | int | None = None
    subclass_name: str | list[str] | None = None


@dataclass
class NumpySubclassImageItem(_SubclassFields, NumpyImageItem):
    """Numpy item with the subclass fields."""


@dataclass
class NumpySubclassImageBatch(_SubclassFields, NumpyImageBatch):
    """Numpy batch with the subclass fields."""

    item_class: ClassVar[type[NumpyImageItem]] = NumpySubclassImageItem


@dataclass
class SubclassImageItem(_SubclassFields, ImageItem):
    """Image item that also carries its subclass id and name."""

    numpy_class: ClassVar[type[NumpyImageItem]] = NumpySubclassImageItem


@dataclass
class SubclassImageBatch(_SubclassFields, ImageBatch):
    """Image batch that also carries the subclass ids and names."""

    item_class: ClassVar[type[ImageItem]] = SubclassImageItem
    numpy_class: ClassVar[type[NumpyImageBatch]] = NumpySubclassImageBatch

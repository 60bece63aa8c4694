"""Where training features come from: a cache of frozen-backbone patch features, or a live source.

The cache holds every training image's features, computed once, as float16 (or
float32) in RAM up to a budget; past it, every chunk is written to a temporary
file that is memory-mapped for training, and a log line says so. That file is
unlinked from its creation, so no kill (SIGKILL, the OOM killer) leaves it on
disk. When the training data carry a random pixel augmentation, cached features
would freeze one draw of it, so :class:`LiveFeatures` recomputes the features of freshly
augmented images on every access instead (:func:`cache_bypass_reason` decides).
"""

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

#: transforms that give the same pixels on every call: a cache of their output stays valid
DETERMINISTIC_TRANSFORMS = frozenset(
    {"Resize", "CenterCrop", "Pad", "Normalize", "Grayscale", "ToImage", "ToDtype", "ToPureTensor", "Identity"}
)


class FeatureCache:
    """Append-only store of ``(C, H, W)`` feature maps, their subclass labels and image files.

    Args:
        budget_bytes: RAM the cache may hold; above it the features spill to disk.
        directory: where the spill file goes (default: the system temp dir).
        dtype: ``torch.float16`` (half the memory) or ``torch.float32`` (bit-exact features).
    """

    def __init__(
        self, budget_bytes: int = 8 * 2**30, directory: str | Path | None = None, dtype: torch.dtype = torch.float16
    ) -> None:
        if dtype not in (torch.float16, torch.float32):
            msg = f"The feature cache holds float16 or float32, got {dtype}."
            raise ValueError(msg)
        self.budget_bytes = budget_bytes
        self.directory = directory
        self.dtype = dtype
        self.clear()

    def clear(self) -> None:
        """Forget every cached feature (and free the spill file's disk space)."""
        if getattr(self, "_spill", None) is not None:
            self._spill.close()
        self._chunks: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._paths: list[str | None] = []
        self._bytes = 0
        self._count = 0
        self._shape: tuple[int, ...] | None = None
        self._spill = None

    def __len__(self) -> int:
        return self._count

    @property
    def on_disk(self) -> bool:
        """Whether the cache went over its RAM budget and lives in a memory-mapped file."""
        return self._spill is not None

    @property
    def ram_bytes(self) -> int:
        """Bytes of features held in RAM: at most the budget, 0 once the cache has spilled to its file."""
        return sum(chunk.numel() * chunk.element_size() for chunk in self._chunks)

    def append(self, features: torch.Tensor, labels: torch.Tensor, paths: list[str] | None = None) -> None:
        """Add a batch of ``(B, C, H, W)`` features with their ``(B,)`` labels and, when known, image files."""
        chunk = features.detach().to("cpu", self.dtype)
        if self._shape is None:
            self._shape = tuple(chunk.shape[1:])
        elif tuple(chunk.shape[1:]) != self._shape:
            msg = (
                f"Training images give feature maps of shape {tuple(chunk.shape[1:])} after {self._shape}: "
                "all training images must reach the model at one size (set the pre-processor's image_size)."
            )
            raise ValueError(msg)
        self._labels.append(labels.detach().to("cpu", torch.long).reshape(-1))
        self._paths += list(paths) if paths is not None else [None] * len(chunk)
        self._count += len(chunk)
        self._bytes += chunk.numel() * chunk.element_size()
        if self._spill is None and self._bytes > self.budget_bytes:
            # Unnamed (unlinked at once): a named file outlived a killed process, many GiB each time. Its space is
            # freed when clear() closes it after training, or when the process ends however it ends.
            self._spill = tempfile.TemporaryFile(dir=self.directory, prefix="adapted_moe_cache_", suffix=".bin")  # noqa: SIM115
            logger.info(
                "Feature cache passed its RAM budget of %.2f GiB: spilling to %s.",
                self.budget_bytes / 2**30,
                self._where(),
            )
            for old in self._chunks:
                self._spill.write(old.numpy().tobytes())
            self._chunks = []
        if self._spill is not None:
            self._spill.write(chunk.numpy().tobytes())
        else:
            self._chunks.append(chunk)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All cached features ``(N, C, H, W)`` (the cache's dtype, possibly memory-mapped) and labels ``(N,)``."""
        labels = torch.cat(self._labels) if self._labels else torch.zeros(0, dtype=torch.long)
        if self._shape is None:
            return torch.zeros(0), labels
        if self._spill is None:
            return torch.cat(self._chunks), labels
        self._spill.flush()
        numpy_dtype = np.float16 if self.dtype == torch.float16 else np.float32
        mapped = np.memmap(self._spill, dtype=numpy_dtype, mode="c", shape=(self._count, *self._shape))
        return torch.from_numpy(np.asarray(mapped)), labels

    def paths(self) -> list[str] | None:
        """Each cached feature map's image file, or ``None`` unless every one is known (to name odd images)."""
        return None if None in self._paths else list(self._paths)

    def describe(self) -> str:
        """One line for the log: size and where the cache lives."""
        where = self._where() if self._spill is not None else "RAM"
        return f"feature cache: {self._count} images, {self._bytes / 2**20:.1f} MiB {str(self.dtype)[6:]} in {where}"

    def _where(self) -> str:
        """The spill file, for the log: it has no name, only a directory."""
        directory = self.directory or tempfile.gettempdir()
        return f"memory-mapped file in {directory} (unlinked: nothing is left when the process ends, however it ends)"


def pixel_augmentations(transform: Any) -> list[str]:
    """Names of the transforms in ``transform`` that may change pixels differently on every call.

    Containers (``Compose``, ``RandomApply``, ``RandomChoice``, ``RandomOrder``) are opened;
    anything not in :data:`DETERMINISTIC_TRANSFORMS` counts, unknown callables included.
    """
    if transform is None:
        return []
    children = getattr(transform, "transforms", None)
    if isinstance(children, list | tuple | nn.ModuleList):
        return [name for child in children for name in pixel_augmentations(child)]
    name = type(transform).__name__
    return [] if name in DETERMINISTIC_TRANSFORMS else [name]


def cache_bypass_reason(dataset: Any, datamodule: Any = None) -> str | None:
    """Why the training features cannot be cached, or ``None`` when they can.

    Looks at the augmentations the training dataset applies (anomalib's datasets
    hold them in ``augmentations``, the datamodule's ``train_augmentations`` plus the
    model's resize); without a dataset, at the datamodule's ``train_augmentations``.
    """
    if dataset is not None:
        transform = getattr(dataset, "augmentations", None)
    else:
        transform = getattr(datamodule, "train_augmentations", None)
    random = pixel_augmentations(transform)
    if not random:
        return None
    return (
        f"the training augmentation changes pixels ({', '.join(dict.fromkeys(random))}), so every epoch needs "
        "the features of freshly augmented images"
    )


class LiveFeatures:
    """Training features recomputed on every access, for data with random pixel augmentations.

    ``source[index]`` loads those dataset items (the dataset augments them anew),
    collates them, applies the pre-processor's transform the way anomalib's
    ``PreProcessor.on_train_batch_start`` does, and runs the frozen feature
    extractor. It indexes like the cached tensor, so training draws the same
    batches from either.

    Args:
        dataset: the training dataset (an ``AnomalibDataset``: items, ``collate_fn``, ``samples``).
        extractor: frozen patch-feature extractor.
        transform: the pre-processor's transform, or ``None``.
        reason: why the cache is bypassed, for the log.
    """

    def __init__(self, dataset: Any, extractor: nn.Module, transform: Any = None, reason: str = "") -> None:
        self.dataset = dataset
        self.extractor = extractor
        self.transform = transform
        self.reason = reason

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Float32 features ``(B, C, H, W)`` of the items ``index``, on the extractor's device."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        batch = self.dataset.collate_fn([self.dataset[int(i)] for i in index])
        device = next(self.extractor.parameters()).device
        image, gt_mask = batch.image.to(device), batch.gt_mask
        if self.transform is not None:
            image, gt_mask = self.transform(image, gt_mask)
        return self.extractor(image).float()

    def split(self, size: int) -> Iterator[torch.Tensor]:
        """Features of ``size`` consecutive items at a time, as ``torch.Tensor.split`` gives a cached tensor's."""
        return (self[start : start + size] for start in range(0, len(self), size))

    def labels(self) -> torch.Tensor:
        """Subclass label of every item (the dataset's ``subclass_id`` column), ``-1`` where there is none."""
        samples = getattr(self.dataset, "samples", None)
        if samples is not None and "subclass_id" in samples:
            return torch.tensor(samples["subclass_id"].to_numpy(), dtype=torch.long)
        return torch.full((len(self),), -1, dtype=torch.long)

    def paths(self) -> list[str] | None:
        """Image file of every item (the dataset's ``image_path`` column), or ``None`` without one."""
        samples = getattr(self.dataset, "samples", None)
        return list(samples["image_path"]) if samples is not None and "image_path" in samples else None

    def describe(self) -> str:
        """One line for the log: no cache, and why."""
        return f"no feature cache, {len(self)} images' features recomputed every epoch: {self.reason}"

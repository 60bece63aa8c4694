"""The training feature cache: frozen-backbone patch features of every training image, computed once.

Features are stored as float16 in RAM up to a budget; past it, every chunk is
written to a temporary file that is memory-mapped for training, and a log line
says so.
"""

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


class FeatureCache:
    """Append-only store of ``(C, H, W)`` feature maps and their subclass labels.

    Args:
        budget_bytes: RAM the cache may hold; above it the features spill to disk.
        directory: where the spill file goes (default: the system temp dir).
    """

    def __init__(self, budget_bytes: int = 8 * 2**30, directory: str | Path | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.directory = directory
        self.clear()

    def clear(self) -> None:
        """Forget every cached feature (and delete the spill file)."""
        if getattr(self, "_spill", None) is not None:
            self._spill.close()
        self._chunks: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
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

    def append(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch of ``(B, C, H, W)`` features with their ``(B,)`` labels."""
        chunk = features.detach().to("cpu", torch.float16)
        if self._shape is None:
            self._shape = tuple(chunk.shape[1:])
        elif tuple(chunk.shape[1:]) != self._shape:
            msg = (
                f"Training images give feature maps of shape {tuple(chunk.shape[1:])} after {self._shape}: "
                "all training images must reach the model at one size (set the pre-processor's image_size)."
            )
            raise ValueError(msg)
        self._labels.append(labels.detach().to("cpu", torch.long).reshape(-1))
        self._count += len(chunk)
        self._bytes += chunk.numel() * chunk.element_size()
        if self._spill is None and self._bytes > self.budget_bytes:
            # closed (and deleted) by clear(), when the cache is dropped after training
            self._spill = tempfile.NamedTemporaryFile(dir=self.directory, prefix="adapted_moe_cache_", suffix=".f16")  # noqa: SIM115
            logger.info(
                "Feature cache passed its RAM budget of %.2f GiB: spilling to the memory-mapped file %s.",
                self.budget_bytes / 2**30,
                self._spill.name,
            )
            for old in self._chunks:
                self._spill.write(old.numpy().tobytes())
            self._chunks = []
        if self._spill is not None:
            self._spill.write(chunk.numpy().tobytes())
        else:
            self._chunks.append(chunk)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All cached features ``(N, C, H, W)`` (float16, possibly memory-mapped) and labels ``(N,)``."""
        labels = torch.cat(self._labels) if self._labels else torch.zeros(0, dtype=torch.long)
        if self._shape is None:
            return torch.zeros(0), labels
        if self._spill is None:
            return torch.cat(self._chunks), labels
        self._spill.flush()
        mapped = np.memmap(self._spill.name, dtype=np.float16, mode="c", shape=(self._count, *self._shape))
        return torch.from_numpy(np.asarray(mapped)), labels

    def describe(self) -> str:
        """One line for the log: size and where the cache lives."""
        where = f"memory-mapped file {self._spill.name}" if self._spill is not None else "RAM"
        return f"{self._bytes / 2**20:.1f} MiB float16 in {where}"

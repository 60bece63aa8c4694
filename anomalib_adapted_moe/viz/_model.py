"""What every figure needs from a model: the torch model, its expert names, its pre-processing, eval mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DataLoader

from anomalib_adapted_moe.models.adapted_moe import AdaptedMoEModel


def torch_model(model: Any) -> AdaptedMoEModel:
    """The :class:`AdaptedMoEModel` of an ``AdaptedMoE`` Lightning module, or the model itself."""
    inner = model if isinstance(model, AdaptedMoEModel) else getattr(model, "model", None)
    if not isinstance(inner, AdaptedMoEModel):
        msg = f"Expected an AdaptedMoE or AdaptedMoEModel, got {type(model).__name__}."
        raise TypeError(msg)
    return inner


def expert_names(model: Any) -> list[str]:
    """Name of every expert: the subclass (or cluster) it was trained on, ``expert_<i>`` when unknown."""
    count = torch_model(model).num_experts
    names = list(getattr(model, "expert_names", None) or [])
    return names if len(names) == count else [f"expert_{i}" for i in range(count)]


def preprocess(model: Any, images: torch.Tensor) -> torch.Tensor:
    """Apply the model's pre-processing (resize, ImageNet normalisation) as anomalib's test loop does.

    ``images`` are ``(B, 3, H, W)`` or ``(3, H, W)`` in ``[0, 1]``, as the datamodules give them. A bare
    :class:`AdaptedMoEModel` has no pre-processor: its images must already be pre-processed.
    """
    if images.ndim == 3:
        images = images[None]
    device = torch_model(model).adaptor.linear.weight.device
    images = images.to(device, torch.float32)
    pre_processor = None if isinstance(model, AdaptedMoEModel) else getattr(model, "pre_processor", None)
    transform = getattr(pre_processor, "transform", None)
    return transform(images) if transform is not None else images


@contextmanager
def evaluating(model: Any) -> Iterator[AdaptedMoEModel]:
    """The torch model in eval mode under ``torch.no_grad()``; its previous mode is restored afterwards."""
    inner = torch_model(model)
    was_training = inner.training
    inner.eval()
    try:
        with torch.no_grad():
            yield inner
    finally:
        inner.train(was_training)


def batches(model: Any, dataloader: DataLoader, max_images: int | None = None) -> Iterator[tuple[torch.Tensor, Any]]:
    """Pre-processed images and their batch, batch by batch, stopping after ``max_images`` images."""
    taken = 0
    for batch in dataloader:
        images = batch.image
        if max_images is not None:
            if taken >= max_images:
                return
            images = images[: max_images - taken]
        taken += len(images)
        yield preprocess(model, images), batch


def batch_field(batch: Any, name: str, count: int, default: Any) -> list:
    """Per-image values of a batch field (``subclass_name``, ``gt_label`` ...), ``default`` when absent."""
    values = getattr(batch, name, None)
    if values is None:
        return [default] * count
    if isinstance(values, torch.Tensor):
        values = values.reshape(-1).tolist()
    elif isinstance(values, str):
        values = [values]
    return list(values)[:count]

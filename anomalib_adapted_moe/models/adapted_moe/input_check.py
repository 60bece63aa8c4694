"""What the model takes: a batch of RGB images, floats in [0, 1], which its pre-processor resizes and normalises.

From Python a user may hand the model tensors of their own (``model(images)``, ``engine.predict`` with their own
loader). Images on the 0..255 scale were scored without a word (a walkthrough: a good image 0.14 -> 0.69, every score
moved up to 0.73), uint8 ones ended in torchvision's "Input tensor should be a float tensor" and a single (3, H, W)
image in "required rank 4 tensor to use channels_last format", neither naming the fix. anomalib's datasets always give
[0, 1] floats. :class:`InputCheck` checks each batch before the pre-processor; the model's ``forward`` the tensor it is
given (not while it is traced for export).
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchvision.transforms import v2

#: values beyond [0, 1] by more than this are refused: a resize's overshoot stays within it, 0..255 and ImageNet
#: normalised images (down to -2.1) do not
MARGIN = 0.5


class ImageInputError(ValueError):
    """A batch of images the model would misread: not a float (N, 3, H, W) batch in [0, 1]."""


def input_problem(images: object) -> str | None:
    """Why ``images`` are not a batch of RGB images in [0, 1], or ``None`` (anything but a tensor is anomalib's)."""
    if not isinstance(images, torch.Tensor):
        return None
    if images.ndim == 3:
        return f"a single image of shape {tuple(images.shape)}: the model takes a batch. Fix: images.unsqueeze(0)."
    if images.ndim != 4:
        return f"a tensor of shape {tuple(images.shape)}: the model takes a batch of images (N, 3, H, W)."
    if not images.is_floating_point():
        return (
            f"images of dtype {images.dtype}: the model takes floats in [0, 1]. Fix: images.float() / 255 for 8-bit "
            "images."
        )
    if not images.numel():
        return None
    low, high = float(images.min()), float(images.max())
    if low < -MARGIN:
        return (
            f"images with values down to {low:g}: normalised already? The model takes RGB in [0, 1] and normalises "
            "it itself (its pre-processor). Fix: give the images before normalising them."
        )
    if high > 1 + MARGIN:
        return (
            f"images with values up to {high:g}: the model takes RGB in [0, 1] (its pre-processor normalises them "
            "itself), so 0..255 images are misread (a walkthrough: a good image scored 0.14 -> 0.69). Fix: divide "
            "8-bit images by 255."
        )
    return None


#: the mean the backbone's ImageNet weights expect, which a pre-processor's ``Normalize`` must give
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def normalises(transform: object) -> bool:
    """Whether a pre-processor's ``transform`` (a v2 transform, a ``Compose`` of them nested) holds a ``Normalize``
    with ImageNet's mean: one without it trained and tested without a word (a walkthrough: image AUROC 94.44 ->
    39.8)."""
    if isinstance(transform, v2.Normalize):
        return all(abs(float(a) - b) < 1e-3 for a, b in zip(transform.mean, IMAGENET_MEAN, strict=False))
    return any(normalises(inner) for inner in getattr(transform, "transforms", []))


def refuse_wrong_input(images: object) -> None:
    """Raise :class:`ImageInputError` for :func:`input_problem`'s images."""
    if problem := input_problem(images):
        raise ImageInputError(problem)


class InputCheck(Callback):
    """:func:`refuse_wrong_input` on every batch's images, before the pre-processor (listed before it)."""

    @staticmethod
    def _check(batch: object) -> None:
        refuse_wrong_input(getattr(batch, "image", None))

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args) -> None:
        self._check(batch)

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args) -> None:
        self._check(batch)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args) -> None:
        self._check(batch)

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args) -> None:
        self._check(batch)

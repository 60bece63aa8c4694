"""What the model takes: a batch of RGB images, floats in [0, 1], which its pre-processor resizes and normalises.

From Python a user may hand the model tensors of their own (``model(images)``, ``engine.predict`` with their own
loader). Images on the 0..255 scale were scored without a word (a walkthrough: a good image 0.14 -> 0.69, every score
moved up to 0.73), uint8 ones ended in torchvision's "Input tensor should be a float tensor" and a single (3, H, W)
image in "required rank 4 tensor to use channels_last format", neither naming the fix. anomalib's datasets always give
[0, 1] floats. :class:`InputCheck` checks each validation, test and predict batch before the pre-processor (training
augmentations may leave [0, 1] on purpose); the model's ``forward`` the tensor it is given (not while it is traced for
export). A model whose pre-processor does not normalise (``pre_processor=False``, the datamodule normalising) is not
checked.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from anomalib_adapted_moe.command_line import refuse

#: values beyond [0, 1] by more than this are refused: a resize's overshoot stays within it, 0..255 and ImageNet
#: normalised images (down to -2.1) do not
MARGIN = 0.5
#: ImageNet's mean and std, which the backbone's weights expect of a pre-processor's ``Normalize``
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageInputError(ValueError):
    """A batch of images the model would misread: not a float (N, 3, H, W) batch in [0, 1]."""


def input_problem(images: object) -> str | None:
    """Why ``images`` are not a batch of RGB images in [0, 1], or ``None`` (anything but a tensor is anomalib's)."""
    if not isinstance(images, torch.Tensor):
        return None
    shape = tuple(images.shape)
    if images.ndim == 3:
        fix = "images.unsqueeze(0)" if shape[0] in (1, 3) else "images.unsqueeze(1) for grey images (N, H, W)"
        return f"a tensor of shape {shape}: the model takes a batch of images (N, 3, H, W). Fix: {fix}."
    if images.ndim != 4:
        return f"a tensor of shape {shape}: the model takes a batch of images (N, 3, H, W)."
    if not images.is_floating_point():
        return (
            f"images of dtype {images.dtype}: the model takes floats in [0, 1]. Fix: images.float() / 255 for 8-bit "
            "images."
        )
    if not images.numel():
        return None
    low, high = (float(value) for value in torch.aminmax(images.detach()))
    if low != low or high != high:  # NaN
        return "images holding NaN values: they would score NaN or anything. Fix: check how the images were made."
    if low < -MARGIN or (low < -0.05 and high > 1 + MARGIN):  # ImageNet-normalised: a bright texture's low is -0.4
        return (
            f"images with values from {low:g} to {high:g}: normalised already? The model takes RGB in [0, 1] and "
            "normalises it itself (its pre-processor). Fix: give the images before normalising them."
        )
    if high > 1 + MARGIN:
        return (
            f"images with values up to {high:g}: the model takes RGB in [0, 1] (its pre-processor normalises them "
            "itself), so 0..255 images are misread (a walkthrough: a good image scored 0.14 -> 0.69). Fix: divide "
            "8-bit images by 255."
        )
    return None


def normalises(transform: object) -> bool:
    """Whether a pre-processor's ``transform`` holds a ``Normalize`` with ImageNet's mean and std (torchvision's v1
    or v2, in a ``Compose`` or ``nn.Sequential``, nested): one without it trained and tested without a word (a
    walkthrough: image AUROC 94.44 -> 39.8)."""
    if type(transform).__name__ == "Normalize" and hasattr(transform, "mean") and hasattr(transform, "std"):
        pairs = [*zip(transform.mean, IMAGENET_MEAN, strict=False), *zip(transform.std, IMAGENET_STD, strict=False)]
        return all(abs(float(value) - expected) < 1e-3 for value, expected in pairs)
    inner = list(getattr(transform, "transforms", []))
    if isinstance(transform, nn.Module):
        inner += list(transform.children())
    return any(normalises(part) for part in inner)


def checks_input(model: LightningModule) -> bool:
    """Whether ``model``'s inputs are checked: its pre-processor normalises them (with ``pre_processor=False`` the
    datamodule may normalise, and [0, 1] is not what the model takes)."""
    pre_processor = getattr(model, "pre_processor", None)
    return bool(pre_processor) and normalises(getattr(pre_processor, "transform", None))


def refuse_wrong_input(images: object) -> None:
    """Refuse (:func:`~anomalib_adapted_moe.command_line.refuse`: one line under the ``anomalib`` command)
    :func:`input_problem`'s images with :class:`ImageInputError`."""
    if problem := input_problem(images):
        refuse(ImageInputError(problem))


class InputCheck(Callback):
    """:func:`refuse_wrong_input` on every validation, test and predict batch's images, before the pre-processor
    (listed before it), for a model that :func:`checks_input`."""

    @staticmethod
    def _check(pl_module: LightningModule, batch: object) -> None:
        if checks_input(pl_module):
            refuse_wrong_input(getattr(batch, "image", None))

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args) -> None:
        self._check(pl_module, batch)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args) -> None:
        self._check(pl_module, batch)

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: object, *args) -> None:
        self._check(pl_module, batch)

"""Where the map lights up: every expert's anomaly map on one image, and a single map over its image.

The model mixes the maps of its top-k experts with the renormalised routing
probabilities. Drawing every expert's map on the same image (each with its own
test-time adaptation, as if the router had chosen it) shows what the mixture
draws on and what a wrong route would have cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ._model import evaluating, preprocess
from .style import new_figure

MAP_CMAP = "inferno"
OUTLINE_COLOUR = "#00e5ff"


def per_expert_maps(model: Any, image: torch.Tensor) -> torch.Tensor:
    """Anomaly map ``(E, H, W)`` of every expert on one image, at the pre-processed size, raw scores.

    Each expert scores the image's features test-time adapted onto its own statistics (when the
    model has ``tta``), and its patch scores are upsampled and smoothed like ``AdaptedMoEModel.forward``.
    With ``top_k >= E`` the model's own map is the routing-probability-weighted sum of these.

    Args:
        model: an ``AdaptedMoE`` (its pre-processor is applied) or a bare ``AdaptedMoEModel``.
        image: ``(3, H, W)`` or ``(1, 3, H, W)`` in ``[0, 1]``, as the datamodules give it.
    """
    with evaluating(model) as inner:
        images = preprocess(model, image)
        if images.shape[0] != 1:
            msg = f"per_expert_maps takes one image, got a batch of {images.shape[0]}."
            raise ValueError(msg)
        adapted = inner.adapt(inner.patch_features(images))
        index = torch.arange(inner.num_experts, device=adapted.device)[None]  # (1, E): every expert
        scores = inner.calibration(inner.expert_scores(adapted, index), index)  # (1, E, P), on the common scale
        patch_maps = scores.reshape(inner.num_experts, *adapted.shape[-2:])
        return inner.blur(patch_maps, size=images.shape[-2:])[:, 0].cpu()


def model_map(model: Any, image: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The model's own raw anomaly map ``(H, W)`` (top-k mixture) and image score for one image in ``[0, 1]``."""
    with evaluating(model) as inner:
        prediction = inner(preprocess(model, image))
        return prediction.anomaly_map[0, 0].cpu(), float(prediction.pred_score[0])


def _as_array(value: Any) -> np.ndarray:
    return value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _image_hwc(image: Any, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` floats in ``[0, 1]`` at ``size``, from ``(3, H, W)``, ``(1, 3, H, W)`` or ``(H, W, 3)``."""
    array = _as_array(image).astype(np.float32)
    array = array.reshape(array.shape[-3:]) if array.ndim == 4 else array
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.max() > 1.0 + 1e-6:  # uint8-range
        array = array / 255.0
    if array.shape[:2] != size:
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
        array = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0].numpy().transpose(1, 2, 0)
    return np.clip(array, 0.0, 1.0)


def _plane(value: Any) -> np.ndarray:
    """A ``(H, W)`` float array from a map or mask with any singleton axes (``(1, H, W)``, ``(1, H, W, 1)`` ...)."""
    array = np.squeeze(_as_array(value).astype(np.float32))
    if array.ndim != 2:
        msg = f"Expected one (H, W) map or mask (singleton axes allowed), got shape {_as_array(value).shape}."
        raise ValueError(msg)
    return array


def _mask_hw(mask: Any, size: tuple[int, int]) -> np.ndarray | None:
    if mask is None:
        return None
    array = _plane(mask)
    if array.shape != size:
        tensor = torch.from_numpy(np.ascontiguousarray(array))[None, None]
        array = F.interpolate(tensor, size=size, mode="nearest")[0, 0].numpy()
    return array > 0.5


def _outline(ax: Any, mask: np.ndarray | None, colour: str = OUTLINE_COLOUR) -> None:
    if mask is not None and mask.any() and not mask.all():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.2)


def plot_per_expert_maps(
    image: Any,
    maps: Any,
    expert_names: Sequence[str],
    gt_mask: Any = None,
    probabilities: Any = None,
    mixed_map: Any = None,
    title: str | None = None,
) -> Figure:
    """The input image, optionally the model's mixed map, then every expert's map, on one colour scale.

    Image axes (``figure.axes`` minus the last, which is the colour bar): ``"input"``, then
    ``"model output (top-k mix)"`` when ``mixed_map`` is given, then one per expert titled with its
    name (and routing probability when ``probabilities`` is given; the top-routed expert in bold).
    The ground-truth outline, when given, is drawn on every panel.
    """
    maps = _as_array(maps)
    if maps.ndim != 3 or maps.shape[0] != len(expert_names):
        msg = f"maps must be (experts, H, W) with {len(expert_names)} experts, got {maps.shape}."
        raise ValueError(msg)
    size = maps.shape[1:]
    mixed = None if mixed_map is None else _plane(mixed_map)
    if mixed is not None and mixed.shape != size:
        msg = f"mixed_map must have the experts' map size {size}, got {mixed.shape}."
        raise ValueError(msg)
    probabilities = None if probabilities is None else _as_array(probabilities).reshape(-1)
    mask = _mask_hw(gt_mask, size)
    everything = maps if mixed is None else np.concatenate([maps, mixed[None]])
    vmin, vmax = float(everything.min()), float(everything.max())

    panels = 1 + (mixed is not None) + len(expert_names)
    columns = min(panels, 4)
    rows = math.ceil(panels / columns)
    figure = new_figure(2.7 * columns + 0.9, 2.85 * rows + 0.5, layout="constrained")
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(panels)]
    axes[0].imshow(_image_hwc(image, size))
    _outline(axes[0], mask, "red")
    axes[0].set_title("input" + (" (defect outlined)" if mask is not None and mask.any() else ""), fontsize=9)
    heat = None
    panel = 1
    if mixed is not None:
        heat = axes[panel].imshow(mixed, cmap=MAP_CMAP, vmin=vmin, vmax=vmax)
        _outline(axes[panel], mask)
        axes[panel].set_title("model output (top-k mix)", fontsize=9)
        panel += 1
    top = int(np.argmax(probabilities)) if probabilities is not None else -1
    for expert, name in enumerate(expert_names):
        ax = axes[panel + expert]
        heat = ax.imshow(maps[expert], cmap=MAP_CMAP, vmin=vmin, vmax=vmax)
        _outline(ax, mask)
        label = name if probabilities is None else f"{name}\nrouting p = {probabilities[expert]:.2f}"
        ax.set_title(label, fontsize=9, fontweight="bold" if expert == top else "normal")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(heat, ax=axes, shrink=0.8, label="anomaly score (raw, shared scale)")
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


def plot_anomaly_overlay(
    image: Any,
    anomaly_map: Any,
    gt_mask: Any = None,
    pred_mask: Any = None,
    score: float | None = None,
    title: str | None = None,
) -> Figure:
    """Two panels: the image (ground truth outlined in red) and the anomaly map laid over it.

    ``anomaly_map`` is ``(H, W)`` (any leading singleton axes); ``pred_mask``, when given, is outlined
    in cyan on the overlay.
    """
    heat = _plane(anomaly_map)
    size = heat.shape
    picture = _image_hwc(image, size)
    truth, predicted = _mask_hw(gt_mask, size), _mask_hw(pred_mask, size)
    figure = new_figure(8.4, 4.2, layout="constrained")
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    left.imshow(picture)
    _outline(left, truth, "red")
    left.set_title("image" + (" (ground truth in red)" if truth is not None and truth.any() else ""), fontsize=9)
    right.imshow(picture)
    overlay = right.imshow(heat, cmap="jet", alpha=0.5)
    _outline(right, predicted)
    right.set_title(
        "anomaly map"
        + (f", score {score:.3f}" if score is not None else "")
        + (" (predicted mask in cyan)" if predicted is not None and predicted.any() else ""),
        fontsize=9,
    )
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(overlay, ax=right, shrink=0.85)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure

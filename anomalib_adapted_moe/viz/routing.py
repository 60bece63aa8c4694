"""Which expert takes an image: routing embeddings, centres and routing probabilities.

The router embeds the adapted patch features of an image (conv3x3 + ReLU + GAP,
L2-normalised) and routes by cosine similarity to one centre per expert. The
embeddings of a subclass should gather around its expert's centre; an unseen
variant should land nearest the expert of the subclass it resembles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch.utils.data import DataLoader

from ._model import batch_field, batches, evaluating, expert_names, preprocess
from .projection import pca_2d
from .style import SEEN_MARKER, UNSEEN_MARKER, default_seen, new_figure, subclass_colours, subclass_order

UNSEEN_LABEL_COLOUR = "#b34700"


def routing_embeddings(model: Any, dataloader: DataLoader, max_images: int | None = None) -> dict[str, Any]:
    """Routing embedding and routing probabilities of every image of ``dataloader``.

    Args:
        model: an ``AdaptedMoE`` (its pre-processor is applied) or a bare ``AdaptedMoEModel``
            (images must then be pre-processed already).
        dataloader: batches with ``image`` and, for the figures, ``subclass_name``/``subclass_id``
            (``TextureAD``, ``SyntheticTextureAD``).
        max_images: stop after this many images.

    Returns:
        ``embeddings`` ``(N, D)``, ``probabilities`` ``(N, E)``, ``subclass_names`` (N names, ``"unknown"``
        when the data carry none), ``subclass_ids`` ``(N,)`` (-1: unseen), ``labels`` ``(N,)`` (1: anomalous,
        -1: unknown), ``centers`` ``(E, D)``, ``expert_names`` (E names) and ``seen`` (the subclass names
        with ``subclass_id >= 0``; those that name an expert when the data carry no ids), as numpy arrays
        and lists.
    """
    embeddings, probabilities, names, ids, labels = [], [], [], [], []
    with evaluating(model) as inner:
        for images, batch in batches(model, dataloader, max_images):
            embedding = inner.router.embed(inner.adapt(inner.patch_features(images)))
            embeddings.append(embedding.cpu())
            probabilities.append(inner.router.probabilities(embedding).cpu())
            count = len(images)
            names += [str(name) for name in batch_field(batch, "subclass_name", count, "unknown")]
            ids += [int(value) for value in batch_field(batch, "subclass_id", count, -1)]
            labels += [int(value) for value in batch_field(batch, "gt_label", count, -1)]
        centers = inner.router.centers.detach().cpu().numpy().copy()
    experts = expert_names(model)
    seen = sorted({name for name, index in zip(names, ids, strict=True) if index >= 0})
    return {
        "embeddings": torch.cat(embeddings).numpy() if embeddings else np.zeros((0, len(centers[0]))),
        "probabilities": torch.cat(probabilities).numpy() if probabilities else np.zeros((0, len(experts))),
        "subclass_names": names,
        "subclass_ids": np.asarray(ids, dtype=np.int64),
        "labels": np.asarray(labels, dtype=np.int64),
        "centers": centers,
        "expert_names": experts,
        "seen": seen or default_seen(names, experts),
    }


def routing_probabilities(model: Any, images: torch.Tensor) -> np.ndarray:
    """Routing probabilities ``(N, E)`` of ``(N, 3, H, W)`` (or one ``(3, H, W)``) images in ``[0, 1]``."""
    with evaluating(model) as inner:
        embedding = inner.router.embed(inner.adapt(inner.patch_features(preprocess(model, images))))
        return inner.router.probabilities(embedding).cpu().numpy()


def routing_matrix(
    subclass_names: Sequence[str],
    probabilities: np.ndarray | torch.Tensor,
    expert_names: Sequence[str],
    seen: Iterable[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Mean routing probability of each true subclass (rows) to each expert (columns).

    Args:
        subclass_names: true subclass of each image, ``N`` names.
        probabilities: ``(N, E)`` routing probabilities.
        expert_names: the ``E`` experts (column order).
        seen: subclasses seen in training; default: those that name an expert.

    Returns:
        ``(R, E)`` matrix whose rows sum to 1, and the ``R`` row labels: seen subclasses
        first (in expert order), then unseen ones (sorted).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape != (len(subclass_names), len(expert_names)):
        msg = (
            f"probabilities must be (images, experts) = ({len(subclass_names)}, {len(expert_names)}), "
            f"got {probabilities.shape}."
        )
        raise ValueError(msg)
    seen = default_seen(subclass_names, expert_names) if seen is None else list(seen)
    rows = subclass_order(subclass_names, seen, expert_names)
    names = np.asarray(subclass_names, dtype=object)
    matrix = np.stack([probabilities[names == row].mean(axis=0) for row in rows]) if rows else np.zeros((0, 0))
    return matrix, rows


def plot_routing_embeddings(
    embeddings: np.ndarray,
    names: Sequence[str],
    centers: np.ndarray,
    expert_names: Sequence[str],
    seen: Iterable[str] | None = None,
    title: str | None = None,
) -> Figure:
    """2-D PCA of the routing embeddings, one colour per subclass, unseen subclasses as triangles.

    The PCA is fitted on the seen images and the centres, so unseen images are placed in
    the space the router learnt. Expert centres are hollow black stars labelled with the expert.

    Artists, in order: one scatter per subclass (seen first, in expert order; then unseen,
    sorted) labelled ``name`` or ``"name (unseen)"``, then the centres ``"expert centres"``.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    seen = default_seen(names, expert_names) if seen is None else list(seen)
    order = subclass_order(names, seen, expert_names)
    colours = subclass_colours(order, seen, expert_names)
    name_array = np.asarray(names, dtype=object)
    is_seen = np.isin(name_array, list(seen)) if len(name_array) else np.zeros(0, dtype=bool)
    fit_on = np.concatenate([embeddings[is_seen], centers]) if is_seen.any() else np.concatenate([embeddings, centers])
    (points, stars), ratio = pca_2d(fit_on, embeddings, centers)

    figure = new_figure(9.0, 6.0, layout="constrained")
    ax = figure.add_subplot()
    for name in order:
        member = name_array == name
        unseen = name not in seen
        ax.scatter(
            points[member, 0],
            points[member, 1],
            s=46 if unseen else 30,
            c=colours[name],
            marker=UNSEEN_MARKER if unseen else SEEN_MARKER,
            edgecolors="black" if unseen else "none",
            linewidths=0.6,
            alpha=0.9 if unseen else 0.7,
            label=f"{name} (unseen)" if unseen else name,
            zorder=3 if unseen else 2,
        )
    ax.scatter(  # hollow, so the images routed onto a centre stay visible beneath it
        stars[:, 0],
        stars[:, 1],
        s=420,
        facecolors="none",
        edgecolors="black",
        marker="*",
        linewidths=1.6,
        label="expert centres",
        zorder=4,
    )
    middle = stars.mean(axis=0)
    span = np.ptp(np.concatenate([points, stars]), axis=0) + 1e-12
    for (x, y), expert in zip(stars, expert_names, strict=True):
        away = (np.array([x, y]) - middle) / span  # labels point away from the middle of the centres
        direction = away / (np.linalg.norm(away) + 1e-12) if np.linalg.norm(away) > 1e-6 else np.array([1.0, 1.0])
        ax.annotate(
            expert,
            (x, y),
            xytext=tuple(16 * direction),
            textcoords="offset points",
            ha="left" if direction[0] >= 0 else "right",
            va="bottom" if direction[1] >= 0 else "top",
            fontsize=8,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "0.6", "alpha": 0.8},
        )
    ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f} % of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.0f} % of variance)")
    ax.set_title(title or f"Routing embeddings ({embeddings.shape[1]}-d) in 2-D: PCA fitted on seen images and centres")
    ax.margins(x=0.22, y=0.12)  # room for the centre labels inside the axes
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="true subclass", frameon=False)
    return figure


def plot_routing_matrix(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    expert_names: Sequence[str],
    seen: Iterable[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Heatmap of :func:`routing_matrix`: true subclass (rows) x expert (columns), values written in the cells.

    Rows that name an expert have that cell outlined in green (where they should go); unseen
    rows are below a line, their labels in orange.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    seen = default_seen(row_labels, expert_names) if seen is None else list(seen)
    rows, cols = matrix.shape
    longest = max(map(len, row_labels), default=0)
    figure = new_figure(2.4 + 1.0 * max(cols, 3) + 0.075 * longest, 2.2 + 0.5 * rows, layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for r in range(rows):
        for c in range(cols):
            value = matrix[r, c]
            ax.text(
                c, r, f"{value:.2f}", ha="center", va="center", fontsize=9, color="white" if value > 0.6 else "black"
            )
        if row_labels[r] in expert_names:
            c = list(expert_names).index(row_labels[r])
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="#2ca02c", linewidth=2.0))
    ax.set_xticks(range(cols), list(expert_names), rotation=30, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(rows), list(row_labels))
    num_seen = sum(label in seen for label in row_labels)
    for tick, label in zip(ax.get_yticklabels(), row_labels, strict=True):
        if label not in seen:
            tick.set_color(UNSEEN_LABEL_COLOUR)
    if 0 < num_seen < rows:
        ax.axhline(num_seen - 0.5, color="black", linewidth=1.5)
    ax.set_xlabel("expert (trained on subclass)")
    ax.set_ylabel("true subclass")
    ax.set_title(
        title or "Mean routing probability per true subclass\n(green: each subclass's own expert; unseen in orange)",
        fontsize=10,
    )
    figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="routing probability")
    return figure

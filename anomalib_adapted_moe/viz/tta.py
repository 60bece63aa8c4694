"""How far an image's features sit from its expert's training distribution, before and after test-time adaptation.

Test-time adaptation (paper eq. 5) standardises each channel of an image's adapted
patch features over its spatial positions and gives it the routed expert's
training mean and within-image standard deviation (then the per-patch L2 norm).
We measure the gap as the 2-Wasserstein distance between per-channel Gaussians:

    d(image, expert k) = sqrt( sum_c (m_c - mean_k,c)^2 + (s_c - std_k,c)^2 )

where ``m_c``/``s_c`` are the image's spatial mean and standard deviation of channel
``c`` and ``mean_k``/``std_k`` the expert's TTA statistics. An unseen variant far from
its expert before TTA should come close after it; a seen image is close already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch.utils.data import DataLoader

from ._model import batch_field, batches, evaluating, expert_names
from .projection import pca_2d
from .routing import UNSEEN_LABEL_COLOUR
from .style import default_seen, expert_colours, new_figure, subclass_order

BEFORE_COLOUR = "#b0b0b0"
AFTER_COLOUR = "#1f5fa8"


def gaussian_distance(
    mean: torch.Tensor, std: torch.Tensor, target_mean: torch.Tensor, target_std: torch.Tensor
) -> torch.Tensor:
    """2-Wasserstein distance between diagonal Gaussians ``N(mean, std^2)`` and ``N(target_mean, target_std^2)``.

    All ``(..., C)``; returns ``(...)``.
    """
    return ((mean - target_mean).pow(2) + (std - target_std).pow(2)).sum(dim=-1).sqrt()


def _sample(patches: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random patches of each image of ``(B, P, C)`` (all when fewer): ``(B, count, C)``."""
    positions = torch.stack([torch.randperm(patches.shape[1], generator=generator)[:count] for _ in patches])
    return torch.gather(patches, 1, positions[..., None].expand(-1, -1, patches.shape[2]).to(patches.device))


def tta_shift(
    model: Any,
    dataloader: DataLoader,
    reference: DataLoader | None = None,
    max_images: int | None = None,
    patches_per_image: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Distance of every image of ``dataloader`` to its routed (top-1) expert before and after TTA.

    Args:
        model: an ``AdaptedMoE`` (its pre-processor is applied) or a bare ``AdaptedMoEModel``.
        dataloader: test images, with ``subclass_name``/``subclass_id`` for the figure.
        reference: training images; their (un-adapted) patch features are the experts' distributions
            that :func:`plot_tta_shift` draws. Each belongs to the expert named like its subclass, else
            to its routed expert.
        max_images: stop after this many images (of each loader).
        patches_per_image: patches sampled per image for the scatter plots.
        seed: seed of the patch sampling.

    Returns:
        ``distance_before``/``distance_after`` ``(N,)``, ``expert_index`` ``(N,)`` (top-1 expert),
        ``subclass_names``, ``seen``, ``labels`` ``(N,)``, ``patches_before``/``patches_after``
        ``(N, S, C)`` (the same sampled positions), ``reference_patches`` ``(M, C)`` and
        ``reference_expert`` ``(M,)`` (empty without ``reference``), ``expert_names``, as numpy arrays and lists.
    """
    generator = torch.Generator().manual_seed(seed)
    experts = expert_names(model)
    out: dict[str, list] = {key: [] for key in ("before", "after", "index", "patches_before", "patches_after")}
    names, ids, labels = [], [], []
    ref_patches, ref_expert = [], []
    with evaluating(model) as inner:
        stats = inner.adaptation
        for images, batch in batches(model, dataloader, max_images):
            adapted = inner.adapt(inner.patch_features(images))  # (B, C, H, W)
            index = inner.route(adapted)[0][:, :1]  # (B, 1) top-1 expert
            mean, variance = stats.image_statistics(adapted)
            target_mean, target_std = stats.expert_mean[index[:, 0]], stats.expert_std[index[:, 0]]
            after = inner.expert_inputs(adapted, index)[:, 0]  # (B, P, C): TTA onto the routed expert
            out["before"].append(gaussian_distance(mean, variance.sqrt(), target_mean, target_std).cpu())
            out["after"].append(
                gaussian_distance(
                    after.mean(dim=1), after.var(dim=1, unbiased=False).sqrt(), target_mean, target_std
                ).cpu()
            )
            out["index"].append(index[:, 0].cpu())
            before = adapted.flatten(2).transpose(1, 2)  # (B, P, C)
            state = generator.get_state()
            out["patches_before"].append(_sample(before, patches_per_image, generator).cpu())
            generator.set_state(state)  # the same positions after TTA
            out["patches_after"].append(_sample(after, patches_per_image, generator).cpu())
            count = len(images)
            names += [str(name) for name in batch_field(batch, "subclass_name", count, "unknown")]
            ids += [int(value) for value in batch_field(batch, "subclass_id", count, -1)]
            labels += [int(value) for value in batch_field(batch, "gt_label", count, -1)]
        for images, batch in batches(model, reference, max_images) if reference is not None else ():
            adapted = inner.adapt(inner.patch_features(images))
            routed = inner.route(adapted)[0][:, 0].tolist()
            batch_names = batch_field(batch, "subclass_name", len(images), None)
            owner = [experts.index(n) if n in experts else r for n, r in zip(batch_names, routed, strict=True)]
            sampled = _sample(adapted.flatten(2).transpose(1, 2), patches_per_image, generator).cpu()
            ref_patches.append(sampled.reshape(-1, sampled.shape[-1]))
            ref_expert.append(torch.as_tensor(owner).repeat_interleave(sampled.shape[1]))
        channels = inner.adaptation.expert_mean.shape[1]

    def cat(parts: list[torch.Tensor], shape: tuple[int, ...]) -> np.ndarray:
        return torch.cat(parts).numpy() if parts else np.zeros(shape, dtype=np.float32)

    seen = sorted({name for name, index in zip(names, ids, strict=True) if index >= 0})
    return {
        "distance_before": cat(out["before"], (0,)),
        "distance_after": cat(out["after"], (0,)),
        "expert_index": cat(out["index"], (0,)).astype(np.int64),
        "subclass_names": names,
        "seen": seen or default_seen(names, experts),
        "labels": np.asarray(labels, dtype=np.int64),
        "patches_before": cat(out["patches_before"], (0, patches_per_image, channels)),
        "patches_after": cat(out["patches_after"], (0, patches_per_image, channels)),
        "reference_patches": cat(ref_patches, (0, channels)),
        "reference_expert": cat(ref_expert, (0,)).astype(np.int64),
        "expert_names": experts,
    }


def mean_distances(shift: dict[str, Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per subclass (seen first, then unseen): mean distance before and after TTA."""
    names = np.asarray(shift["subclass_names"], dtype=object)
    order = subclass_order(shift["subclass_names"], shift["seen"], shift["expert_names"])
    before = np.array([shift["distance_before"][names == name].mean() for name in order])
    after = np.array([shift["distance_after"][names == name].mean() for name in order])
    return order, before, after


def plot_tta_shift(shift: dict[str, Any], subclasses: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Bars of the mean distance to the routed expert before/after TTA per subclass, and patch scatters.

    Top axes: two bar series (``ax.containers[0]`` before, ``[1]`` after), one group per subclass,
    seen first. Below, when ``shift`` has reference patches, one PCA panel per subclass of
    ``subclasses`` (default: the unseen ones, at most four): the experts' training patches in their
    colours, the subclass's test patches before TTA (grey circles) and after TTA (black crosses),
    then their means (large circle, large cross) joined by an arrow.
    """
    order, before, after = mean_distances(shift)
    experts = shift["expert_names"]
    seen = set(shift["seen"])
    if subclasses is None:
        subclasses = [name for name in order if name not in seen][:4]
    subclasses = list(subclasses) if len(shift["reference_patches"]) else []
    panels = len(subclasses)
    figure = new_figure(max(10.0, 4.3 * panels), 4.6 + (4.4 if panels else 0.0), layout="constrained")
    grid = figure.add_gridspec(2 if panels else 1, max(panels, 1), height_ratios=[1.0, 1.15] if panels else None)
    bars = figure.add_subplot(grid[0, :])
    x = np.arange(len(order))
    bars.bar(x - 0.2, before, width=0.4, color=BEFORE_COLOUR, edgecolor="0.35", label="before TTA")
    bars.bar(x + 0.2, after, width=0.4, color=AFTER_COLOUR, label="after TTA")
    bars.set_xticks(x, order, rotation=20, ha="right", rotation_mode="anchor", fontsize=9)
    for tick, name in zip(bars.get_xticklabels(), order, strict=True):
        if name not in seen:
            tick.set_color(UNSEEN_LABEL_COLOUR)
    bars.set_ylabel("distance to routed expert\n(W2, per-channel Gaussians)")
    bars.set_title(
        title or "Feature statistics vs the routed expert's training statistics (unseen subclasses in orange)"
    )
    bars.legend(frameon=False)
    bars.grid(axis="y", alpha=0.3)

    if not panels:
        return figure
    colours, _ = expert_colours(experts)
    reference, owner = shift["reference_patches"], shift["reference_expert"]
    names = np.asarray(shift["subclass_names"], dtype=object)
    channels = reference.shape[1]
    clouds = []
    for subclass in subclasses:
        member = names == subclass
        clouds += [
            shift["patches_before"][member].reshape(-1, channels),
            shift["patches_after"][member].reshape(-1, channels),
        ]
    (ref_xy, *cloud_xy), ratio = pca_2d(reference, reference, *clouds)  # the experts' distributions fix the axes
    for column, subclass in enumerate(subclasses):
        ax = figure.add_subplot(grid[1, column])
        member = names == subclass
        before_xy, after_xy = cloud_xy[2 * column], cloud_xy[2 * column + 1]
        for expert, colour in enumerate(colours):
            own = owner == expert
            ax.scatter(ref_xy[own, 0], ref_xy[own, 1], s=5, c=colour, alpha=0.25, linewidths=0, label=experts[expert])
        ax.scatter(
            before_xy[:, 0],
            before_xy[:, 1],
            s=14,
            facecolors="none",
            edgecolors="0.35",
            linewidths=0.6,
            label="before TTA",
        )
        ax.scatter(after_xy[:, 0], after_xy[:, 1], s=14, c="black", marker="x", linewidths=0.7, label="after TTA")
        if len(before_xy):  # where the subclass's patches sit on average, and where TTA moves them
            start, end = before_xy.mean(axis=0), after_xy.mean(axis=0)
            ax.scatter(*start, s=160, facecolors="white", edgecolors="black", linewidths=2.0, zorder=5)
            ax.scatter(*end, s=160, c="black", marker="X", edgecolors="white", linewidths=1.0, zorder=5)
            ax.annotate("", end, xytext=start, zorder=6, arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.8})
        routed = np.bincount(shift["expert_index"][member], minlength=len(experts))
        target = experts[int(routed.argmax())] if routed.sum() else "-"
        ax.set_title(
            f"{subclass}\nmostly routed to {target}",
            fontsize=9,
            color=UNSEEN_LABEL_COLOUR if subclass not in seen else "black",
        )
        ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f} %)", fontsize=8)
        ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.0f} %)", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colour, alpha=0.6, label=f"{name} (training patches)")
        for name, colour in zip(experts, colours, strict=True)
    ]
    handles += [
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.35", label="before TTA"),
        Line2D([], [], marker="x", linestyle="", color="black", label="after TTA (onto the routed expert)"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="white",
            markeredgecolor="black",
            markersize=9,
            markeredgewidth=2,
            label="mean before TTA",
        ),
        Line2D([], [], marker="X", linestyle="", color="black", markersize=9, label="mean after TTA"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), fontsize=8, frameon=False)
    return figure

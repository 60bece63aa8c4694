"""How far the one-threshold figures move with the draw of the test images: bootstrap intervals.

A real-texture category has 80 test images per subclass. Its pooled - mean image AUROC and its mean F1 gap to
each subclass's best threshold move from one draw of such images to another by about as much as issue 15's
limits (0.5 and 3 points), so a single run's PASS or MISS says little near the limit. Redrawing each subclass's
normal and defective images with replacement (as many of each as it has) gives the spread a new draw of test
images of the same make-up would show: an interval that reaches across a limit marks a result the test set cannot
decide. The training's own spread (seeds) comes on top of it. Two scorings of the same images (another switch,
seed or commit) are compared on the same redraws (:func:`paired_changes`), so the spread the draw gives both cancels.
"""

from collections.abc import Iterator

import numpy as np
import torch

from .per_subclass import SubclassScores, nanmean

#: share of the redraws inside the interval, and how many redraws
INTERVAL_LEVEL, RESAMPLES = 0.9, 1000


def one_threshold_figures(groups: dict[str, SubclassScores], threshold: float) -> tuple[float, float]:
    """Pooled - mean image AUROC over ``groups`` and their mean F1 gap (best F1 less F1 at ``threshold``), in
    percent points: the two figures a single category threshold is judged by."""
    pooled = SubclassScores.merged(groups.values()).image_auroc()
    mean = nanmean(group.image_auroc() for group in groups.values())
    gap = nanmean(group.best_f1() - group.f1_at(threshold) for group in groups.values())
    return 100 * (pooled - mean), 100 * gap


def _redraws(groups: dict[str, SubclassScores], resamples: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Per redraw, each subclass's image indices: its normal and its defective images drawn with replacement, as
    many of each as it has, so every redraw keeps the split's make-up (and no subclass loses its defects)."""
    generator = np.random.default_rng(seed)
    classes = {}
    for name, group in groups.items():
        labels = torch.cat(group.image_labels)
        classes[name] = [indices for value in (0, 1) if len(indices := torch.nonzero(labels == value).flatten())]
    for _ in range(resamples):
        yield {
            name: torch.cat([indices[generator.integers(len(indices), size=len(indices))] for indices in parts])
            for name, parts in classes.items()
        }


def _drawn(groups: dict[str, SubclassScores], picks: dict[str, torch.Tensor]) -> dict[str, SubclassScores]:
    """The images ``picks`` names of each subclass (image scores and labels only)."""
    drawn = {}
    for name, group in groups.items():
        scores, labels = torch.cat(group.image_scores), torch.cat(group.image_labels)
        drawn[name] = SubclassScores(image_scores=[scores[picks[name]]], image_labels=[labels[picks[name]]])
    return drawn


def _percentiles(figures: list, level: float) -> list[list[float]]:
    """Per column of ``figures``, its central ``level`` percentile interval."""
    low, high = np.percentile(np.array(figures), [50 * (1 - level), 50 * (1 + level)], axis=0)
    return [[float(a), float(b)] for a, b in zip(low, high, strict=True)]


def bootstrap_intervals(
    groups: dict[str, SubclassScores],
    threshold: float,
    resamples: int = RESAMPLES,
    level: float = INTERVAL_LEVEL,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile intervals of :func:`one_threshold_figures` over ``resamples`` redraws of the images.

    Each redraw takes, per subclass, its normal and its defective images with replacement, as many of each as it
    has, so every redraw keeps the split's make-up (and no subclass loses its defects). Seeded: the same scores
    give the same interval.

    Returns:
        ``{"pooled_minus_mean": [low, high], "f1_gap": [low, high]}`` in percent points.
    """
    figures = [one_threshold_figures(_drawn(groups, picks), threshold) for picks in _redraws(groups, resamples, seed)]
    pooled, gap = _percentiles(figures, level)
    return {"pooled_minus_mean": pooled, "f1_gap": gap}


def paired_changes(
    before: tuple[dict[str, SubclassScores], float],
    after: tuple[dict[str, SubclassScores], float],
    resamples: int = RESAMPLES,
    level: float = INTERVAL_LEVEL,
    seed: int = 0,
) -> dict[str, dict]:
    """How two scorings of the same test images differ in |pooled - mean| and in the mean F1 gap (``after`` less
    ``before``), each ``(groups, threshold)``: the change and its interval over redraws that take the same images
    for both, so the draw's spread common to both (hard images, easy ones) cancels and a switch or a training
    change can be judged on one test set.

    Raises:
        ValueError: the two do not hold the same images (subclasses, or labels in the same order).

    Returns:
        per figure (``"abs_pooled_minus_mean"``, ``"f1_gap"``), in percent points: ``{"before": ..., "after": ...,
        "change": ..., "interval": [low, high]}``.
    """
    (first, first_threshold), (second, second_threshold) = before, after
    for name in sorted(set(first) | set(second)):
        if (
            name not in first
            or name not in second
            or not torch.equal(torch.cat(first[name].image_labels), torch.cat(second[name].image_labels))
        ):
            msg = f"Cannot pair the two scorings: subclass {name!r} does not hold the same images in both."
            raise ValueError(msg)

    def figures(picks: dict[str, torch.Tensor] | None = None) -> list[float]:
        """|pooled - mean| and F1 gap, before then after, on the images ``picks`` names (default: all)."""
        values = []
        for groups, threshold in ((first, first_threshold), (second, second_threshold)):
            pooled, gap = one_threshold_figures(groups if picks is None else _drawn(groups, picks), threshold)
            values += [abs(pooled), gap]
        return values

    def changes(values: list[float]) -> tuple[float, float]:
        return values[2] - values[0], values[3] - values[1]

    point = figures()
    intervals = _percentiles([changes(figures(picks)) for picks in _redraws(first, resamples, seed)], level)
    return {
        name: {"before": point[i], "after": point[i + 2], "change": changes(point)[i], "interval": intervals[i]}
        for i, name in enumerate(("abs_pooled_minus_mean", "f1_gap"))
    }

"""How far the one-threshold figures move with the draw of the test images: bootstrap intervals.

A real-texture category has 80 test images per subclass. Its pooled - mean image AUROC and its mean F1 gap to
each subclass's best threshold move from one draw of such images to another by about as much as issue 15's
limits (0.5 and 3 points), so a single run's PASS or MISS says little near the limit. Redrawing each subclass's
normal and defective images with replacement (as many of each as it has) gives the spread a new draw of test
images of the same make-up would show: an interval that reaches across a limit marks a result the test set cannot
decide. The training's own spread (seeds) comes on top of it.
"""

import numpy as np
import torch

from .per_subclass import SubclassScores, _nanmean

#: share of the redraws inside the interval, and how many redraws
INTERVAL_LEVEL, RESAMPLES = 0.9, 1000


def one_threshold_figures(groups: dict[str, SubclassScores], threshold: float) -> tuple[float, float]:
    """Pooled - mean image AUROC over ``groups`` and their mean F1 gap (best F1 less F1 at ``threshold``), in
    percent points: the two figures a single category threshold is judged by."""
    pooled = SubclassScores.merged(groups.values()).image_auroc()
    mean = _nanmean(group.image_auroc() for group in groups.values())
    gap = _nanmean(group.best_f1() - group.f1_at(threshold) for group in groups.values())
    return 100 * (pooled - mean), 100 * gap


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
    generator = np.random.default_rng(seed)
    images = {}
    for name, group in groups.items():
        scores, labels = torch.cat(group.image_scores), torch.cat(group.image_labels)
        classes = [torch.nonzero(labels == value).flatten() for value in (0, 1)]
        images[name] = (scores, labels, [indices for indices in classes if len(indices)])
    figures = []
    for _ in range(resamples):
        drawn = {}
        for name, (scores, labels, classes) in images.items():
            pick = torch.cat([indices[generator.integers(len(indices), size=len(indices))] for indices in classes])
            drawn[name] = SubclassScores(image_scores=[scores[pick]], image_labels=[labels[pick]])
        figures.append(one_threshold_figures(drawn, threshold))
    low, high = np.percentile(np.array(figures), [50 * (1 - level), 50 * (1 + level)], axis=0)
    return {"pooled_minus_mean": [float(low[0]), float(high[0])], "f1_gap": [float(low[1]), float(high[1])]}

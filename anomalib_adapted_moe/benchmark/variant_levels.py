"""Issue 15's one-threshold figures with each unseen variant's level read from some of its own images.

A line knows which product it runs, so the level of one it never trained on can be read from that product's first
images (:meth:`.AdaptedMoEPostProcessor.fit_variant_level`: their lower quartile against the validation normal
images'). Here, per unseen subclass, ``images`` of its test images are drawn at random (their labels are not read:
the test set's defect share comes with them, half here, more than a line sees), give its level from their stored
scores, and are left out of the figures; each subclass's other images are scored against the threshold raised by
its level (the same as their scores less it). Seen subclasses keep the threshold as trained. The pooled - mean AUROC
and the mean F1 gap are then computed as for the plain run, with their bootstrap intervals over redraws of the
remaining images; the draw of the level's images is one, seeded (a new draw moves the figures too).
"""

from __future__ import annotations

import numpy as np
import torch

from anomalib_adapted_moe.evaluation import SubclassScores, bootstrap_intervals, one_threshold_figures
from anomalib_adapted_moe.models.adapted_moe.post_processor import MIN_VARIANT_IMAGES, read_variant_level


def with_variant_levels(result: dict, images: int, seed: int) -> dict:
    """The unseen split of one category's stored ``result`` (:func:`.thresholds.measure_category`), each
    subclass's level read from ``images`` of its test images drawn with ``seed``.

    Returns:
        ``{"images": images, "levels": {subclass: level}, "pooled_minus_mean": ..., "f1_gap": ...,
        "intervals": {...}}``, the figures in percent points.

    Raises:
        ValueError: fewer than :data:`MIN_VARIANT_IMAGES` ``images``, a subclass with too few test images to
            leave some of each kind after the draw, or a result stored before the validation quartile was kept.
    """
    if images < MIN_VARIANT_IMAGES:
        msg = f"--variant-level-images must be at least {MIN_VARIANT_IMAGES} (the model's own floor), got {images}."
        raise ValueError(msg)
    quartile = result.get("normal_image_quartile")
    if quartile is None or np.isnan(quartile):
        msg = (
            f"{result['category']}: the stored result carries no validation quartile (measured before it was "
            "kept), so no level can be read. Fix: run the thresholds command again at this commit."
        )
        raise ValueError(msg)
    names = sorted(result["splits"]["unseen"]["f1_gaps"])
    generator = np.random.default_rng(seed)
    levels, groups = {}, {}
    for name in names:
        scores = torch.tensor(result["image_scores"][name]["scores"])
        labels = torch.tensor(result["image_scores"][name]["labels"])
        drawn = torch.zeros(len(scores), dtype=torch.bool)
        drawn[torch.from_numpy(generator.permutation(len(scores))[:images])] = True
        rest = labels[~drawn]
        if len(rest) == 0 or rest.min() == rest.max():
            msg = (
                f"{result['category']} {name}: {images} images drawn for its level leave no normal or no defective "
                f"image of its {len(scores)} to score. Fix: a smaller --variant-level-images."
            )
            raise ValueError(msg)
        levels[name] = read_variant_level(scores[drawn], quartile)
        groups[name] = SubclassScores(image_scores=[scores[~drawn] - levels[name]], image_labels=[rest])
    pooled_minus_mean, f1_gap = one_threshold_figures(groups, result["image_threshold"])
    return {
        "images": images,
        "levels": levels,
        "pooled_minus_mean": pooled_minus_mean,
        "f1_gap": f1_gap,
        "intervals": bootstrap_intervals(groups, result["image_threshold"]),
    }

"""Issue 15's one-threshold figures with each variant's level read from some of its own images.

A line knows which product it runs, so the level of one it switches to can be read from that product's first images
(:meth:`.AdaptedMoEPostProcessor.fit_variant_level`: their lower quartile against the validation normal images').
Here, per subclass of a split (seen or unseen), ``images`` of its test images are drawn at random as a line's first
images would come: ``defect_share`` of them defective, the rest normal (the labels set that mix only, the line's
defect rate; the level reads none). They give the subclass's level from their stored scores and are left out of the
figures; its other images are scored against the threshold raised by its level (the same as their scores less it). A
draw the model refuses as a defect burst (more than half of it above the threshold at its level) leaves that subclass
at the trained threshold, as the refused command leaves a line. The pooled - mean AUROC and the mean F1 gap are then
computed as for the plain run, with their bootstrap intervals over redraws of the remaining images; the draw of the
level's images is one, seeded (a new draw moves the figures too).
"""

from __future__ import annotations

import numpy as np
import torch

from anomalib_adapted_moe.evaluation import SubclassScores, bootstrap_intervals, one_threshold_figures
from anomalib_adapted_moe.models.adapted_moe.post_processor import (
    MIN_VARIANT_IMAGES,
    DefectBurstError,
    read_variant_level,
)


def with_variant_levels(result: dict, images: int, seed: int, defect_share: float, split: str = "unseen") -> dict:
    """The ``split`` (``"seen"`` or ``"unseen"``) of one category's stored ``result``
    (:func:`.thresholds.measure_category`), each subclass's level read from ``images`` of its test images,
    ``defect_share`` of them defective, drawn with ``seed``.

    Returns:
        ``{"split": split, "images": images, "defect_share": defect_share, "levels": {subclass: level},
        "refused": {subclass: "flagged of images"}, "pooled_minus_mean": ..., "f1_gap": ..., "intervals": {...}}``,
        the figures in percent points; a subclass whose draw the model refuses as a defect burst
        (:class:`.DefectBurstError`) keeps level 0.

    Raises:
        ValueError: fewer than :data:`MIN_VARIANT_IMAGES` ``images``, a ``defect_share`` outside [0, 1), a subclass
            with too few test images of either kind to draw and still leave some to score, or a result stored
            before the validation quartile was kept.
    """
    if images < MIN_VARIANT_IMAGES:
        msg = f"--variant-level-images must be at least {MIN_VARIANT_IMAGES} (the model's own floor), got {images}."
        raise ValueError(msg)
    if not 0 <= defect_share < 1:
        msg = f"--variant-level-defect-share must be in [0, 1) (a line's share of defective parts), got {defect_share}."
        raise ValueError(msg)
    quartile = result.get("normal_image_quartile")
    if quartile is None or np.isnan(quartile):
        msg = (
            f"{result['category']}: the stored result carries no validation quartile (measured before it was "
            "kept), so no level can be read. Fix: run the thresholds command again at this commit."
        )
        raise ValueError(msg)
    names = sorted(result["splits"][split]["f1_gaps"])
    generator = np.random.default_rng(seed)
    defective = round(defect_share * images)
    levels, refused, groups = {}, {}, {}
    for name in names:
        scores = torch.tensor(result["image_scores"][name]["scores"])
        labels = torch.tensor(result["image_scores"][name]["labels"])
        drawn = torch.zeros(len(scores), dtype=torch.bool)
        for label, count in ((0, images - defective), (1, defective)):
            candidates = torch.nonzero(labels == label).reshape(-1)
            if count >= len(candidates):  # all of one kind drawn would leave none of it to score
                msg = (
                    f"{result['category']} {name}: {count} {('normal', 'defective')[label]} images drawn for its "
                    f"level leave none of its {len(candidates)} to score. Fix: a smaller --variant-level-images "
                    "(or another --variant-level-defect-share)."
                )
                raise ValueError(msg)
            drawn[candidates[torch.from_numpy(generator.permutation(len(candidates))[:count])]] = True
        try:
            levels[name] = read_variant_level(scores[drawn], quartile, result["image_threshold"])
        except DefectBurstError as error:  # the command refuses such a draw; the line keeps the trained threshold
            levels[name] = 0.0
            refused[name] = f"{error.flagged} of {error.images}"
        groups[name] = SubclassScores(image_scores=[scores[~drawn] - levels[name]], image_labels=[labels[~drawn]])
    pooled_minus_mean, f1_gap = one_threshold_figures(groups, result["image_threshold"])
    return {
        "split": split,
        "images": images,
        "defect_share": defect_share,
        "levels": levels,
        "refused": refused,
        "pooled_minus_mean": pooled_minus_mean,
        "f1_gap": f1_gap,
        "intervals": bootstrap_intervals(groups, result["image_threshold"]),
    }

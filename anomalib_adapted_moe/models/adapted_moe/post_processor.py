"""AdaptedMoE's post-processor: anomalib's, with a squashing normalisation that never clamps scores into ties."""

from typing import Any

import torch
from anomalib.post_processing import PostProcessor


class AdaptedMoEPostProcessor(PostProcessor):
    """anomalib's ``PostProcessor`` (validation min/max, F1-adaptive thresholds, one per category), but
    normalising (:meth:`_normalize`) with ``0.5 + u / (1 + 2|u|)``,
    ``u = (score - threshold) / max(max - min, min_range)``, instead of clamping ``0.5 + u`` to ``[0, 1]``.

    Near the threshold both agree (slope 1, threshold at 0.5, so labels and anomalib's
    sensitivity are unchanged); beyond the validation range anomalib's clamp makes every
    score 0 or 1, and an unseen variant whose scores all lie there loses its ranking
    (image AUROC 50 % on the post-processed scores). The squash stays strictly monotone:
    post-processed scores rank exactly as the raw ones (in float32 until ``|u|`` is
    about 4e6), so anomalib's metrics on them equal the raw-score AUROCs.

    The model's raw scores are already calibrated per expert
    (:class:`.calibration.ExpertCalibration`), which the post-processor cannot do itself:
    it only sees the mixed score and map. They are in units of the experts' spread on
    normal patches, so a validation range narrower than ``min_range`` of those units
    (a model that cannot tell the validation split's anomalies apart) is widened to it,
    rather than turning differences smaller than one normal spread into full-scale ones.

    Args:
        min_range: smallest normalisation range, in the raw scores' units (``0``: anomalib's min-max as is).
        **kwargs: anomalib's ``PostProcessor`` arguments.
    """

    def __init__(self, min_range: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_range = min_range

    @property
    def _checkpoint_config_keys(self) -> tuple[str, ...]:
        return (*super()._checkpoint_config_keys, "min_range")

    def _normalize(  # anomalib's is a staticmethod; both forward and the test/predict callbacks call it
        self,
        preds: torch.Tensor | None,
        norm_min: torch.Tensor,
        norm_max: torch.Tensor,
        threshold: torch.Tensor,
    ) -> torch.Tensor | None:
        """Map ``preds`` into (0, 1), strictly monotone, ``threshold`` to 0.5; unchanged while min/max are unset."""
        if preds is None:
            return preds
        threshold = torch.where(torch.isnan(threshold), (norm_max + norm_min) / 2, threshold)
        value_range = (norm_max - norm_min).clamp_min(self.min_range)
        safe_range = torch.where(value_range > 0, value_range, torch.ones_like(value_range))
        distance = (preds - threshold) / safe_range
        normalized = 0.5 + distance / (1 + 2 * distance.abs())
        has_range = ~torch.isnan(norm_min) & ~torch.isnan(norm_max)
        return torch.where(has_range, normalized, preds)

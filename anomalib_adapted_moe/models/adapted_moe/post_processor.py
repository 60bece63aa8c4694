"""AdaptedMoE's post-processor: anomalib's, with a squashing normalisation that never clamps scores into ties,
and an image threshold taken from the validation split's normal images."""

import logging
from typing import Any, Literal

import torch
from anomalib.post_processing import PostProcessor

logger = logging.getLogger(__name__)


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

    The image threshold: anomalib's F1-adaptive threshold is fitted on the validation
    split's synthetic anomalies, which on real textures are far weaker than real
    defects (development set, metal plates: median calibrated score 3.8 against 3.3 for
    the normal images, real defects 18), so it lands among the normal images and flags
    nearly every test image (F1 66.7 at it, 95-99 at each subclass's best threshold).
    ``image_threshold_rule="normal"`` (the default) puts it at the validation normal
    images' mean plus ``normal_sigmas`` standard deviations of their image scores: the
    one-class three-sigma rule, which needs no anomaly at all. ``"f1"`` keeps
    anomalib's; both are kept (``f1_image_threshold``, ``normal_image_threshold``).

    Args:
        min_range: smallest normalisation range, in the raw scores' units (``0``: anomalib's min-max as is).
        image_threshold_rule: ``"normal"`` (mean + ``normal_sigmas`` std of the validation normal images'
            scores) or ``"f1"`` (anomalib's F1-adaptive threshold on the validation split).
        normal_sigmas: standard deviations above the normal images' mean for the ``"normal"`` rule.
        **kwargs: anomalib's ``PostProcessor`` arguments.
    """

    def __init__(
        self,
        min_range: float = 1.0,
        image_threshold_rule: Literal["normal", "f1"] = "normal",
        normal_sigmas: float = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if image_threshold_rule not in ("normal", "f1"):
            msg = f"image_threshold_rule must be 'normal' or 'f1', got {image_threshold_rule!r}."
            raise ValueError(msg)
        self.min_range = min_range
        self.image_threshold_rule = image_threshold_rule
        self.normal_sigmas = normal_sigmas
        self.register_buffer("f1_image_threshold", torch.tensor(float("nan")))
        self.register_buffer("normal_image_threshold", torch.tensor(float("nan")))
        self._normal_scores: list[torch.Tensor] = []

    @property
    def _checkpoint_config_keys(self) -> tuple[str, ...]:
        return (*super()._checkpoint_config_keys, "min_range", "image_threshold_rule", "normal_sigmas")

    def on_validation_batch_end(self, trainer, pl_module, outputs, *args, **kwargs) -> None:
        """anomalib's updates, and the image scores of the batch's normal images."""
        super().on_validation_batch_end(trainer, pl_module, outputs, *args, **kwargs)
        if self.enable_thresholding and outputs.pred_score is not None and outputs.gt_label is not None:
            self._normal_scores.append(outputs.pred_score[outputs.gt_label == 0].detach().float().cpu())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """anomalib's thresholds and min/max; then the image threshold by ``image_threshold_rule``."""
        super().on_validation_epoch_end(trainer, pl_module)
        if not self.enable_thresholding:
            return
        normal = torch.cat(self._normal_scores) if self._normal_scores else torch.empty(0)
        self._normal_scores = []
        self.f1_image_threshold.copy_(self._image_threshold)
        if len(normal) >= 2:
            self.normal_image_threshold.fill_(float(normal.mean() + self.normal_sigmas * normal.std()))
        if self.image_threshold_rule != "normal":
            return
        if len(normal) < 2:
            logger.warning(
                "The validation split has %d normal image(s), too few for the normal-images threshold: keeping "
                "anomalib's F1-adaptive one. Fix: hold out more training images (val_split_ratio).",
                len(normal),
            )
            return
        self._image_threshold.copy_(self.normal_image_threshold)

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

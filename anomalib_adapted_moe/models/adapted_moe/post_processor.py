"""AdaptedMoE's post-processor: anomalib's, with a squashing normalisation that never clamps scores into ties,
an image threshold taken from the validation split's normal images, and the level of the variant a line runs."""

import logging
from typing import Any, Literal

import torch
from anomalib.post_processing import PostProcessor

from .distributed import all_gather_objects, is_distributed

logger = logging.getLogger(__name__)

#: the quantile of image scores a variant's level is read at: below the defects of a stream up to half defective
VARIANT_QUANTILE = 0.25
#: the fewest images :meth:`AdaptedMoEPostProcessor.fit_variant_level` reads a level from
MIN_VARIANT_IMAGES = 16
#: a level whose own images score above the threshold it gives, more than this share of them, is refused
MAX_FLAGGED_SHARE = 0.5
#: the buffers beyond anomalib's, with their unfitted values: added after checkpoints had been written, so an older
#: checkpoint lacks some of them, and they keep these values
LATER_BUFFERS = {
    "f1_image_threshold": float("nan"),
    "normal_image_threshold": float("nan"),
    "f1_pixel_threshold": float("nan"),
    "normal_pixel_threshold": float("nan"),
    "normal_image_quartile": float("nan"),
    "variant_level": 0.0,
}


def refuse_too_few_variant_images(count: int) -> None:
    """Raise ``ValueError`` for fewer than :data:`MIN_VARIANT_IMAGES` images of a variant (before any scoring, where
    the images are counted first)."""
    if count < MIN_VARIANT_IMAGES:
        msg = (
            f"A variant's level needs at least {MIN_VARIANT_IMAGES} of its images, got {count}. Fix: "
            "give more images of the product the line runs (32 or more give a steadier level)."
        )
        raise ValueError(msg)


class DefectBurstError(ValueError):
    """Most of a variant's images score as defects at the level they give: they are no run of good parts, and the
    level, read among their defects, would raise the threshold over them."""

    def __init__(self, message: str, flagged: int, images: int) -> None:
        super().__init__(message)
        self.flagged, self.images = flagged, images


def read_variant_level(
    scores: torch.Tensor, normal_quartile: float | torch.Tensor, image_threshold: float | torch.Tensor
) -> float:
    """How far a variant's image scores (one float tensor) sit above the validation normal images': lower quartiles,
    less; refused (:class:`DefectBurstError`) when more than :data:`MAX_FLAGGED_SHARE` of the scores lie above
    ``image_threshold`` (the trained one) raised by that level."""
    level = float(torch.quantile(scores, VARIANT_QUANTILE) - normal_quartile)
    flagged = int((scores > image_threshold + level).sum())
    if flagged > MAX_FLAGGED_SHARE * len(scores):
        msg = (
            f"{flagged} of {len(scores)} images score above the image threshold at the level they give "
            f"({level:+.3f}), more than {MAX_FLAGGED_SHARE:.0%}: the lower quartile the level is read at then lies "
            "among defects, and the level would raise the threshold over them. Fix: give images of the product a "
            "person has checked as good (or a later run of the line's images); if they are good, this product's good "
            "parts spread wider than the trained ones' and no level holds one threshold for it: train with its images."
        )
        raise DefectBurstError(msg, flagged, len(scores))
    return level


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

    The pixel threshold, by the same reasoning: anomalib's F1-adaptive one, fitted on the synthetic anomalies' pixels,
    lies low among normal texture, so ``pred_mask`` (what anomalib's visualiser draws, what the OpenVINO inferencer
    returns) flagged several times a defect's area and 3 % of every seen good image (the demo model).
    ``pixel_threshold_rule="normal"`` (the default) puts it at the mean plus ``normal_sigmas`` standard deviations
    of the validation normal images' highest map values: three sigmas above where a normal image's map peaks.
    ``"f1"`` keeps anomalib's; both are kept (``f1_pixel_threshold``, ``normal_pixel_threshold``). Pixel AUROC and
    every ranking are unchanged: only ``pred_mask``, the maps' normalisation and the pixel F1 move.

    The variant's level (:meth:`fit_variant_level`): a variant the model never trained on can score a whole level
    above or below the seen ones, so one threshold flags its normal images or misses its defects, and several
    such variants rank badly together. A line knows which product it runs: from the scores of that product's first
    images (no labels) the image threshold moves by how far their lower quartile sits from the validation normal
    images' (``normal_image_quartile``). ``variant_level`` is a buffer: saved in the checkpoint, a constant of the
    exported graph, 0 (the seen variants' threshold) until fitted and after every validation.

    Args:
        min_range: smallest normalisation range, in the raw scores' units (``0``: anomalib's min-max as is).
        image_threshold_rule: ``"normal"`` (mean + ``normal_sigmas`` std of the validation normal images'
            scores) or ``"f1"`` (anomalib's F1-adaptive threshold on the validation split).
        normal_sigmas: standard deviations above the normal images' mean for the ``"normal"`` rules.
        pixel_threshold_rule: ``"normal"`` (mean + ``normal_sigmas`` std of the validation normal images' map
            peaks) or ``"f1"`` (anomalib's F1-adaptive threshold on the validation split's pixels).
        **kwargs: anomalib's ``PostProcessor`` arguments.
    """

    def __init__(
        self,
        min_range: float = 1.0,
        image_threshold_rule: Literal["normal", "f1"] = "normal",
        normal_sigmas: float = 3.0,
        pixel_threshold_rule: Literal["normal", "f1"] = "normal",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        rules = {"image_threshold_rule": image_threshold_rule, "pixel_threshold_rule": pixel_threshold_rule}
        for name, rule in rules.items():
            if rule not in ("normal", "f1"):
                msg = f"{name} must be 'normal' or 'f1', got {rule!r}."
                raise ValueError(msg)
        self.min_range = min_range
        self.image_threshold_rule = image_threshold_rule
        self.pixel_threshold_rule = pixel_threshold_rule
        self.normal_sigmas = normal_sigmas
        for name, unfitted in LATER_BUFFERS.items():
            self.register_buffer(name, torch.tensor(unfitted))
        #: the validation split's normal images: image file (or ``#rank:index``) -> (image score, map peak)
        self._normal: dict[str, tuple[float | None, float | None]] = {}

    @property
    def _checkpoint_config_keys(self) -> tuple[str, ...]:
        keys = ("min_range", "image_threshold_rule", "normal_sigmas", "pixel_threshold_rule")
        return (*super()._checkpoint_config_keys, *keys)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        """torch's, with :data:`LATER_BUFFERS` an older checkpoint lacks kept as they are. Both of Lightning's ways
        in pass here: the model's state (``post_processor.`` keys) and the callback's own state, which ``anomalib
        test --ckpt_path`` restores too (it stopped with "Missing key(s)" for a checkpoint an hour old)."""
        for name in LATER_BUFFERS:
            state_dict.setdefault(prefix + name, getattr(self, name).detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def on_validation_batch_end(self, trainer, pl_module, outputs, *args, **kwargs) -> None:
        """anomalib's updates, and the image scores and map peaks of the batch's normal images."""
        super().on_validation_batch_end(trainer, pl_module, outputs, *args, **kwargs)
        if not self.enable_thresholding or outputs.gt_label is None:
            return
        normal = (outputs.gt_label == 0).reshape(-1).tolist()
        count = len(normal)
        scores = outputs.pred_score.reshape(-1).tolist() if outputs.pred_score is not None else [None] * count
        peaks = (
            outputs.anomaly_map.detach().float().flatten(1).amax(1).tolist()
            if outputs.anomaly_map is not None
            else [None] * count
        )
        rank = getattr(trainer, "global_rank", 0)
        for path, is_normal, score, peak in zip(
            outputs.image_path or [None] * count, normal, scores, peaks, strict=True
        ):
            if is_normal:  # an image without a file: a key of its own, on every rank
                self._normal[str(path) if path is not None else f"#{rank}:{len(self._normal)}"] = (score, peak)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """anomalib's thresholds and min/max; then the image and pixel thresholds by their rules, the normal
        images' quartile, and the variant's level back to 0 (it was read against the thresholds refitted here)."""
        super().on_validation_epoch_end(trainer, pl_module)
        if not self.enable_thresholding:
            return
        records, self._normal = self._normal, {}
        if is_distributed(trainer):  # each rank validated its share: fit on every rank's, a padding repeat once
            for each in all_gather_objects(records):
                records.update(each)
        normal = torch.tensor([score for score, _ in records.values() if score is not None])
        peaks = torch.tensor([peak for _, peak in records.values() if peak is not None])
        self.f1_image_threshold.copy_(self._image_threshold)
        self.f1_pixel_threshold.copy_(self._pixel_threshold)
        self.variant_level.zero_()
        if len(normal):
            self.normal_image_quartile.fill_(float(torch.quantile(normal, VARIANT_QUANTILE)))
        for values, normal_threshold, rule, threshold, what, of in (
            (normal, self.normal_image_threshold, self.image_threshold_rule, self._image_threshold, "image", "score"),
            (peaks, self.normal_pixel_threshold, self.pixel_threshold_rule, self._pixel_threshold, "pixel", "map"),
        ):
            if len(values) >= 2:
                normal_threshold.fill_(float(values.mean() + self.normal_sigmas * values.std()))
            if rule != "normal":
                continue
            if len(values) < 2:
                logger.warning(
                    "The validation split has %d normal image(s) with a %s, too few for the normal-images %s "
                    "threshold: keeping anomalib's F1-adaptive one. Fix: hold out more training images "
                    "(val_split_ratio).",
                    len(values),
                    of,
                    what,
                )
                continue
            threshold.copy_(normal_threshold)

    @property
    def image_threshold(self) -> torch.Tensor:
        """anomalib's image threshold, raised by the variant's level (0 until :meth:`fit_variant_level`)."""
        return super().image_threshold + self.variant_level

    def fit_variant_level(self, scores: torch.Tensor) -> float:
        """Set ``variant_level`` from the raw image scores of the first images of the variant the line runs.

        The level is the scores' lower quartile less the validation normal images' (``normal_image_quartile``):
        read that low, some of the images may be defective. Unlabelled images are enough; more images give a
        steadier level (32 in the measurements of docs/real_textures). A defect burst is refused: more than half of the
        images above the threshold the level gives. ``variant_level.zero_()`` returns to the seen variants'
        threshold.

        Returns:
            The level, in the raw scores' units.

        Raises:
            DefectBurstError: more than :data:`MAX_FLAGGED_SHARE` of the images score above the threshold at the
                level they give (a ``ValueError``; the level is left as it was).
            ValueError: fewer than :data:`MIN_VARIANT_IMAGES` scores, a score that is not finite, or no
                validation quartile (a model from before it was kept: validate it, or train again).
        """
        scores = scores.detach().float().reshape(-1).cpu()
        refuse_too_few_variant_images(len(scores))
        if not bool(torch.isfinite(scores).all()):
            msg = "A variant's level needs finite image scores; some are NaN or infinite. Fix: check those images."
            raise ValueError(msg)
        if bool(torch.isnan(self.normal_image_quartile)):
            msg = (
                "This model keeps no quartile of its validation normal images (it was trained before the variant "
                "level existed, or its validation split held no normal image), so a variant's level has nothing to "
                "be read against. Fix: run engine.validate on a datamodule whose validation split has normal images "
                "(or train it again), then fit the level."
            )
            raise ValueError(msg)
        level = read_variant_level(scores, self.normal_image_quartile, super().image_threshold)
        self.variant_level.fill_(level)
        return level

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

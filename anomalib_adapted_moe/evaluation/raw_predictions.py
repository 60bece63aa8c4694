"""Predictions with raw (un-normalised) scores, for AUROC.

anomalib's post-processor maps scores to ``[0, 1]`` with the validation set's
min/max and threshold and **clamps** them. Test images of an unseen subclass can
fall wholly beyond the validation range; clamped, their scores tie at 0 or 1 and
their AUROC collapses towards 50 % whatever the model's ranking. AdaptedMoE's own
post-processor squashes instead (strictly monotone, no ties), but the baselines
compared with it use anomalib's, so every table is computed on the raw scores.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from anomalib.data import Batch
from anomalib.engine import Engine
from anomalib.models import AnomalibModule
from torch.utils.data import DataLoader


@contextmanager
def normalization_disabled(model: AnomalibModule) -> Iterator[AnomalibModule]:
    """Within the block the post-processor leaves scores and maps raw (and, its thresholds being for
    normalised scores, sets no labels)."""
    post_processor = model.post_processor
    if post_processor is None or not hasattr(post_processor, "enable_normalization"):
        yield model
        return
    saved = post_processor.enable_normalization, post_processor.enable_thresholding
    post_processor.enable_normalization = post_processor.enable_thresholding = False
    try:
        yield model
    finally:
        post_processor.enable_normalization, post_processor.enable_thresholding = saved


def predict_raw(engine: Engine, model: AnomalibModule, dataloader: DataLoader) -> list[Batch]:
    """``engine.predict`` with raw scores and maps; pre-processing (resize, masks) as anomalib does it."""
    with normalization_disabled(model):
        return engine.predict(model=model, dataloaders=dataloader)

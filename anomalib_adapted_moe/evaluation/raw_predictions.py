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
from dataclasses import fields
from types import SimpleNamespace

from anomalib.data import Batch
from anomalib.engine import Engine
from anomalib.models import AnomalibModule
from lightning.pytorch import Callback, LightningModule, Trainer
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


def without_image(batch: Batch) -> SimpleNamespace:
    """Every field of a predicted ``batch`` but its input image (at 256 px three times its anomaly map): what
    metrics read, without holding a whole test set's images (with them, the thresholds harness ran out of 24 GiB
    on 2560 test images of a category)."""
    return SimpleNamespace(**{f.name: getattr(batch, f.name) for f in fields(batch) if f.name != "image"})


class RawPredictionRecorder(Callback):
    """Keeps every test batch as the model returned it, before the post-processor normalises it.

    Pass it to ``Engine(callbacks=[recorder])``: one ``engine.test`` then gives anomalib's metrics and images
    and, in ``recorder.batches``, the raw scores and maps for the per-subclass table (no second pass over the
    test set). The post-processor replaces ``pred_score`` and ``anomaly_map`` on the batch instead of writing
    into them, so the fields taken first keep the raw tensors; the trainer runs callbacks in list order
    and appends the model's own (the post-processor among them) after those given to the engine.
    ``recorder.processed`` holds the same batches as the post-processor left them. Both keep every field but
    the input image (:func:`without_image`).
    """

    def __init__(self) -> None:
        self.batches: list[SimpleNamespace] = []
        self.processed: list[SimpleNamespace] = []
        self._pending: Batch | None = None  # the last batch, until the post-processor has written into it

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start empty, and refuse to record scores the post-processor has already normalised."""
        self.batches, self.processed, self._pending = [], [], None
        callbacks = trainer.callbacks
        post_processor = getattr(pl_module, "post_processor", None)
        if post_processor in callbacks and callbacks.index(post_processor) < callbacks.index(self):
            msg = (
                "RawPredictionRecorder runs after the model's post-processor, so it would record normalised "
                "scores; pass it to Engine(callbacks=[...]) rather than returning it from configure_callbacks."
            )
            raise RuntimeError(msg)

    def on_test_batch_start(self, *args, **kwargs) -> None:
        """The previous batch is as the post-processor left it now: keep it, without its image."""
        del args, kwargs
        self._keep_pending()

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Batch, *args, **kwargs) -> None:
        """Keep this batch's raw outputs (tensors shared, not copied), and hold the batch the post-processor will
        change until it has."""
        del trainer, pl_module, args, kwargs
        self.batches.append(without_image(outputs))
        self._pending = outputs  # the post-processor writes into it after this hook

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The last batch too."""
        del trainer, pl_module
        self._keep_pending()

    def _keep_pending(self) -> None:
        if self._pending is not None:
            self.processed.append(without_image(self._pending))
            self._pending = None

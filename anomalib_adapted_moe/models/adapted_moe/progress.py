"""A progress bar with ETA over the expert epochs, which run inside Lightning's single (feature-pass) epoch.

Lightning's own bar sits at its last batch while :meth:`AdaptedMoE.fit` trains for
``epochs`` passes (160 at the paper's settings), so the model shows its own,
whenever the trainer shows bars (``enable_progress_bar``, the default of
``anomalib train``). Without bars, a log line every tenth of the epochs.
"""

from __future__ import annotations

import logging

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

logger = logging.getLogger(__name__.rsplit(".", 1)[0])


class EpochProgress:
    """``update(epoch, losses)`` after every expert epoch; use as a context manager."""

    def __init__(self, epochs: int, bar: bool) -> None:
        self.epochs = epochs
        self.bar = (
            Progress(
                TextColumn("AdaptedMoE expert epochs"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"),
            )
            if bar
            else None
        )
        self.task = None

    def __enter__(self) -> EpochProgress:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("experts", total=self.epochs, losses="")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, epoch: int, losses: dict[str, float]) -> None:
        """Advance to ``epoch`` (0-based) done, showing its mean losses."""
        if self.bar is not None:
            self.bar.update(self.task, completed=epoch + 1, losses=f"loss {losses.get('loss', float('nan')):.4f}")
        elif epoch == 0 or (epoch + 1) % max(1, self.epochs // 10) == 0:
            text = ", ".join(f"{name} {value:.4f}" for name, value in losses.items())
            logger.info("AdaptedMoE epoch %d/%d: %s", epoch + 1, self.epochs, text)

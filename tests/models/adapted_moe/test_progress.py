"""Issue 16: the expert epochs show progress with an ETA (a bar) or, without bars, a log line every tenth epoch."""

import logging

import pytest

from anomalib_adapted_moe.models.adapted_moe.progress import EpochProgress


def test_without_a_bar_a_line_is_logged_at_the_first_epoch_and_every_tenth_of_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="anomalib_adapted_moe.models.adapted_moe"), EpochProgress(20, False) as p:
        for epoch in range(20):
            p.update(epoch, {"loss": 1.0 / (epoch + 1)})
    epochs = [r.getMessage().split(":")[0] for r in caplog.records]
    assert epochs == [f"AdaptedMoE epoch {n}/20" for n in (1, *range(2, 21, 2))]


def test_the_bar_counts_the_expert_epochs_with_an_eta_and_the_loss(capsys: pytest.CaptureFixture) -> None:
    with EpochProgress(3, True) as p:
        for epoch in range(3):
            p.update(epoch, {"loss": 0.5})
    shown = capsys.readouterr().out
    assert "AdaptedMoE expert epochs" in shown and "3/3" in shown and "ETA" in shown and "loss 0.5000" in shown

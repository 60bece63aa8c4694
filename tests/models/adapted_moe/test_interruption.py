"""SIGTERM or Ctrl-C outside the expert epochs: a non-zero exit and a line saying what was left."""

import logging
from pathlib import Path

import pytest
from anomalib.engine import Engine
from conftest import tiny_adapted_moe, tiny_synthetic_datamodule
from lightning.pytorch import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

LOGGER = "anomalib_adapted_moe.models.adapted_moe.interruption"


class SigtermAt(Callback):
    """What Lightning's SIGTERM handler does (it sets a flag its loops read), at the first batch of one stage."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def _signal(self, trainer, stage: str) -> None:
        if stage == self.stage:
            trainer._signal_connector.received_sigterm = True

    def on_train_batch_end(self, trainer, *_args) -> None:
        self._signal(trainer, "feature pass")

    def on_validation_batch_end(self, trainer, *_args) -> None:
        self._signal(trainer, "validation")

    def on_test_batch_end(self, trainer, *_args) -> None:
        self._signal(trainer, "test")


@pytest.mark.parametrize(
    ("stage", "said"),
    [
        ("feature pass", "AdaptedMoE stopped before its expert epochs (the feature pass). Nothing was saved"),
        ("validation", "AdaptedMoE stopped after training (stage: validate), before its checkpoint was written."),
        ("test", "AdaptedMoE stopped (stage: test); the trained model is saved in "),
    ],
)
def test_sigterm_outside_the_expert_epochs_exits_143_and_says_what_was_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stage: str, said: str
) -> None:
    """Lightning raised its SIGTERMException without a code there: the job exited 0, without a word, and a
    scheduler counted a training stopped before its checkpoint as done."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    datamodule = tiny_synthetic_datamodule(tmp_path / "data", eval_batch_size=1)  # Lightning stops before a last batch
    model = tiny_adapted_moe(epochs=1, evaluator=False, visualizer=False)
    engine = Engine(
        default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False, callbacks=[SigtermAt(stage)]
    )
    with pytest.raises(SIGTERMException) as stopped:
        engine.train(model=model, datamodule=datamodule)
    assert stopped.value.code == 143
    assert f"SIGTERM: {said}" in caplog.text
    checkpoints = list((tmp_path / "results").rglob("*.ckpt"))
    if stage == "test":  # the checkpoint the message names is the one training wrote
        assert len(checkpoints) == 1 and f"--ckpt_path {checkpoints[0].resolve()}" in caplog.text
    else:
        assert not checkpoints

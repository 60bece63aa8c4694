"""What a stopped run says and how it exits: Ctrl-C, or SIGTERM from ``timeout``, SLURM, Kubernetes or systemd.

Lightning turns SIGTERM into a ``SIGTERMException`` without an exit code, so a job stopped in the middle of the
feature pass, the validation or the test exited 0 without a word, and a scheduler counted it as done (``train &&
export`` went on). :class:`InterruptionReport` gives it code 143 and says, for either signal, what was left: a
checkpoint to go on from, or nothing.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

logger = logging.getLogger(__name__)

#: the exit code of a process ended by SIGTERM, which schedulers read as "stopped", not "done"
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


class InterruptionReport(Callback):
    """On Ctrl-C or SIGTERM: exit code 143 for SIGTERM, and one line saying whether a checkpoint was left."""

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Name the signal, the stage it stopped, and the checkpoint to go on from (or that there is none)."""
        if isinstance(exception, SIGTERMException):
            who = "SIGTERM"
            if exception.code is None:  # raised by Lightning's loops; the expert epochs raise it with 143
                exception.code = SIGTERM_EXIT_CODE
        elif isinstance(exception, KeyboardInterrupt):
            who = "Ctrl-C"
        else:
            return
        if not trainer.is_global_zero:
            return
        logger.warning("%s: %s", who, stopped_message(trainer, pl_module))


def stopped_message(trainer: Trainer, pl_module: LightningModule) -> str:
    """What was left when the run stopped, and how to go on."""
    done, epochs = len(getattr(pl_module, "epoch_seconds", [])), pl_module.schedule.epochs
    if not bool(pl_module._is_fitted.all()):
        begun = getattr(pl_module, "expert_epochs_begun", False)
        where = f"after expert epoch {done} of {epochs}" if begun else "before its expert epochs (the feature pass)"
        return (
            f"AdaptedMoE stopped {where}. Nothing was saved: its checkpoint is written only when training ends. "
            "Run the training again to get a model."
        )
    stage = trainer.state.stage.value if trainer.state.stage is not None else "the run"
    callback = trainer.checkpoint_callback
    candidates = [trainer.ckpt_path]
    if callback is not None:
        candidates += [getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", "")]
    saved = next((str(path) for path in candidates if path and Path(path).is_file()), None)
    if saved is None:
        return (
            f"AdaptedMoE stopped after training (stage: {stage}), before its checkpoint was written. Nothing was "
            "saved. Run the training again to get a model."
        )
    return (
        f"AdaptedMoE stopped (stage: {stage}); the trained model is saved in {saved}. Fix: run what did not finish "
        f"with --ckpt_path {saved} (anomalib test, predict or export)."
    )

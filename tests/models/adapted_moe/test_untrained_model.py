"""A model that never trained: ``anomalib test``/``predict``/``export`` without ``--ckpt_path`` are refused.

They used to finish with exit code 0, an empty metrics table or an IR of random experts, without a word.
"""

import logging
import sys
from pathlib import Path

import pytest
from conftest import tiny_adapted_moe

REFUSED = (
    r"error: (test|predict|export): this AdaptedMoE has not been trained .*Fix: give the checkpoint training wrote"
)


def test_the_anomalib_command_refuses_an_untrained_model_before_writing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_adapted_moe()
    monkeypatch.setattr(sys, "argv", ["/venv/bin/anomalib", "export"])
    steps = {
        "test": model.on_test_start,
        "predict": model.on_predict_start,
        "onnx": lambda: model.to_onnx(tmp_path / "onnx"),
        "openvino": lambda: model.to_openvino(tmp_path / "openvino"),
        "torch": lambda: model.to_torch(tmp_path / "torch"),
    }
    for name, step in steps.items():
        with pytest.raises(SystemExit, match=REFUSED):
            step()
        assert not list(tmp_path.iterdir()), name
    model._is_fitted.fill_(True)  # as training or a loaded checkpoint leaves it
    model.refuse_untrained("test")  # no error


def test_from_python_an_untrained_model_is_exported_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A script may export an untrained model on purpose (the speed benchmark times one)."""
    monkeypatch.setattr(sys, "argv", ["python"])
    with caplog.at_level(logging.WARNING):
        path = tiny_adapted_moe().to_torch(tmp_path)
    assert path.is_file()
    assert "export: this AdaptedMoE has not been trained" in caplog.text

"""`make demo` end to end on a tiny synthetic set: training, the per-subclass table and both OpenVINO exports."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import openvino as ov
import pytest
from anomalib.engine import Engine

from anomalib_adapted_moe import demo, evaluation
from anomalib_adapted_moe.benchmark import precision
from anomalib_adapted_moe.demo import main
from anomalib_adapted_moe.deploy import quantization

TINY_DATA = {"num_train": 4, "num_test_good": 2, "num_test_defect": 3, "num_subclasses": 3, "num_unseen": 1}


@pytest.mark.slow
def test_demo_trains_tests_and_exports_fp32_and_fp16(
    tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes = []  # every pass over the test images through the engine (issue 16: it made two)
    for stage in ("test", "predict"):
        original = getattr(Engine, stage)

        def counted(self, *args, _original=original, _stage=stage, **kwargs):
            passes.append(_stage)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Engine, stage, counted)
    output = tmp_path / "demo"
    data_args = json.dumps({**TINY_DATA, "root": str(tmp_path / "data")})
    tiny = ["--epochs", "1", "--image-size", "64", "--weights", "none", "--openvino-images", "3"]
    summary = main([*tiny, "--output", str(output), "--data-init-args", data_args])
    assert passes == ["test"]  # anomalib's metrics and images, and the raw-score table, from one pass
    # its own lines only: the ONNX exporter's hundreds go to export.log, expected warnings and info logs are off
    printed = capfd.readouterr()
    lines = (printed.out + printed.err).splitlines()
    assert len(lines) <= 40, "\n".join(lines)  # measured 38 here; the full demo adds 5 table rows
    assert not any("Replaced initializer" in line or "GPU available" in line for line in lines)
    assert "[torch.onnx]" in (output / "export.log").read_text()

    splits = {row["subclass"]: row["split"] for row in summary["rows"]}
    assert splits["mean seen"] == "seen" and splits["pooled unseen"] == "unseen" and len(splits) == 7
    assert "| **mean unseen** | unseen |" in (output / "per_subclass.md").read_text()
    assert json.loads((output / "summary.json").read_text())["image_size"] == 64
    # The tolerances of tests/integration/test_integration.py's export test, on the demo's own two exports.
    assert summary["openvino_max_score_diff"] < 1e-3 and summary["openvino_max_map_diff"] < 1e-3
    assert summary["openvino_fp16_max_score_diff"] < 2e-2 and summary["openvino_fp16_max_map_diff"] < 2e-2
    # the precision table: f32 always, exact; every other precision either measured or named with its reason
    matrix = summary["precision_matrix"]
    rows = {row["name"]: row for row in matrix["rows"]}
    assert rows["FP32 IR, f32"]["precision"] == "f32" and rows["FP32 IR, f32"]["max_score_diff"] < 1e-3
    assert set(rows) | set(matrix["not_run"]) == {
        "FP32 IR, f32",
        "FP32 IR, no hint (a bare OpenVINOInferencer)",
        "FP32 IR, bf16",
        "FP32 IR, f16",
        "FP16-weights IR, f32",
        "INT8 IR, f32 rest",
        "INT8 IR, bf16 rest",
    }
    assert "INT8 calibration has" in matrix["not_run"]["INT8 IR, f32 rest"]  # the tiny set is too small for it
    fp32, fp16 = Path(summary["export_path"]), Path(summary["export_path_fp16"])
    assert fp32 != fp16 and fp32.exists() and fp16.exists()
    # exported at the model's image size, as an edge box runs it (anomalib's --input_size): height and width fixed
    assert matrix["input_size"] == [64, 64]
    assert [str(ov.Core().read_model(fp32).inputs[0].get_partial_shape()[axis]) for axis in (2, 3)] == ["64", "64"]
    # FP16 weights take about half the space: the export really compressed them.
    assert fp16.with_suffix(".bin").stat().st_size < 0.6 * fp32.with_suffix(".bin").stat().st_size


class _TinyIRModel:
    """Stands in for a fitted model: ``to_openvino`` writes a one-node IR where anomalib writes the real one."""

    post_processor = None

    def to_openvino(self, folder: Path, **_kwargs) -> Path:
        image = ov.opset13.parameter([1, 3, 8, 8], np.float32)
        path = Path(folder) / "weights" / "openvino" / "model.xml"
        ov.save_model(ov.Model([ov.opset13.relu(image)], [image]), path)
        return path


def _no_int8(*_args) -> None:
    raise quantization.CalibrationDataError("too few images")


def test_export_leaves_no_ir_of_a_previous_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # before: a variant not made this time (INT8 on a small set), or all but model.xml when a rerun was stopped
    # during the export, survived from the previous run: another model's IR beside the new model.xml
    folders = [tmp_path / "weights" / "openvino", tmp_path / "raw" / "weights" / "openvino"]
    for folder in folders:
        folder.mkdir(parents=True)
        for name in ("model_int8.xml", "model_int8.bin", "model_fp16.xml", "model_fp16.bin"):
            (folder / name).write_text("the previous run's model")
    monkeypatch.setattr(quantization, "quantize_backbone", _no_int8)
    _, _, not_made = precision.export_variants(_TinyIRModel(), None, tmp_path)
    assert "int8" in not_made
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == [
            "model.bin",
            "model.xml",
            "model_fp16.bin",
            "model_fp16.xml",
        ]
        assert ov.Core().read_model(folder / "model_fp16.xml")  # this run's, not the text left there


def test_a_rerun_stopped_during_export_leaves_no_summary_of_the_previous_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before: stopped during the export, a rerun left summary.json and the table of the previous run's model
    # beside the new model.xml
    output = tmp_path / "demo"
    output.mkdir()
    for name in ("summary.json", "per_subclass.md"):
        (output / name).write_text('{"category": "metal"}')
    model = SimpleNamespace(expert_names=[], post_processor=SimpleNamespace(image_threshold=0.5, pixel_threshold=0.5))
    monkeypatch.setattr(demo, "cpu_recipe_model", lambda **_kwargs: model)
    monkeypatch.setattr(Engine, "fit", lambda *_args, **_kwargs: None)  # training and testing are not the point
    monkeypatch.setattr(Engine, "test", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(evaluation, "per_subclass_table", lambda *_args, **_kwargs: [])

    def stopped(*_args, **_kwargs):
        assert not (output / "summary.json").exists() and not (output / "per_subclass.md").exists()
        raise KeyboardInterrupt  # Ctrl-C during the export

    monkeypatch.setattr(precision, "measure_precisions", stopped)
    data_args = json.dumps({**TINY_DATA, "root": str(tmp_path / "data"), "num_workers": 0})
    levels = {name: logging.getLogger(name).level for name in demo.QUIETED_LOGGERS}
    with pytest.raises(KeyboardInterrupt):
        main(["--weights", "none", "--image-size", "64", "--output", str(output), "--data-init-args", data_args])
    assert sorted(p.name for p in output.iterdir() if p.is_file()) == ["export.log"]
    # the loggers it quieted are as they were, stopped or not (a test or notebook after it heard none of them)
    assert {name: logging.getLogger(name).level for name in demo.QUIETED_LOGGERS} == levels


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--category", "foo"], "argument --category: invalid choice: 'foo'"),
        (["--epochs", "0"], "argument --epochs: at least 1, got 0"),
        (["--image-size", "16"], "argument --image-size: at least 32, got 16"),
        (["--openvino-images", "0"], "argument --openvino-images: at least 1, got 0"),
        (["--data-init-args", "{bad"], "argument --data-init-args: not JSON"),
        (["--weights", "nosuch.pth"], "--weights nosuch.pth: Backbone weights file"),
        (["--output", "{file}"], "{file}: cannot write results there"),
    ],
    ids=["category", "epochs", "image-size", "openvino-images", "json", "weights", "output"],
)
def test_a_bad_demo_argument_is_named_before_anything_runs(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ended in a traceback, --output under a file and --openvino-images 0 only after the whole training."""
    monkeypatch.setattr(demo, "demo_datamodule", lambda *args, **kwargs: pytest.fail("started"))
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with pytest.raises(SystemExit) as stopped:
        main([arg.replace("{file}", str(blocked)) for arg in argv])
    assert stopped.value.code == 2
    assert said.replace("{file}", str(blocked)) in capsys.readouterr().err

"""Edge deployment: a precision the CPU lacks is refused by name, INT8 calibration refuses test images."""

from types import SimpleNamespace

import pytest

from anomalib_adapted_moe.deploy import (
    CalibrationDataError,
    UnsupportedPrecisionError,
    available_precisions,
    compile_config,
    cpu_model,
    precision,
    quantization,
)


def test_f32_is_offered_on_every_cpu_and_compiles_as_asked() -> None:
    assert available_precisions()[0] == "f32"
    assert compile_config("f32") == {"INFERENCE_PRECISION_HINT": "f32"}


def test_a_precision_the_cpu_lacks_names_the_precision_the_cpu_and_what_it_has(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: ["FP32", "INT8", "EXPORT_IMPORT"])
    monkeypatch.setattr(precision, "cpu_flags", lambda: ["avx2", "avx512f"])
    with pytest.raises(UnsupportedPrecisionError) as error:
        compile_config("bf16")
    text = str(error.value)
    assert text.startswith("bf16 inference was asked for")
    assert cpu_model() in text and "flags: avx2, avx512f" in text
    assert "OpenVINO offers f32, int8 here" in text


def test_unknown_precisions_and_int8_as_a_hint_are_refused() -> None:
    with pytest.raises(UnsupportedPrecisionError, match="Unknown precision 'fp64'"):
        compile_config("fp64")
    if "int8" in available_precisions():
        with pytest.raises(UnsupportedPrecisionError, match="property of the IR"):
            compile_config("int8")


@pytest.mark.parametrize("mode", ["same_as_test", "from_test"])
def test_int8_calibration_refuses_a_validation_split_taken_from_the_test_set(mode: str) -> None:
    datamodule = SimpleNamespace(val_split_mode=mode)
    with pytest.raises(CalibrationDataError, match=f"val_split_mode='{mode}' takes it from the test set"):
        quantization.calibration_loader(datamodule)


def test_int8_calibration_without_a_datamodule_says_how_to_give_one() -> None:
    with pytest.raises(CalibrationDataError, match="pass --data"):
        quantization.calibration_loader(None)


def _fixed_size_ir(folder, height: int, width: int):
    """A one-node IR with AdaptedMoE's input layout, exported for ``height x width`` images (batch free)."""
    import openvino as ov

    image = ov.opset13.parameter([-1, 3, height, width], ov.Type.f32, name="input")
    score = ov.opset13.reduce_mean(image, [1, 2, 3])
    score.output(0).set_names({"pred_score"})
    xml = folder / "model.xml"
    ov.save_model(ov.Model([score], [image]), xml)
    return xml


def test_an_image_of_another_size_than_a_fixed_size_ir_names_the_file_both_sizes_and_the_fix(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer writes ./openvino_cache
    from anomalib_adapted_moe.deploy import ImageSizeError, openvino_inferencer

    inferencer = openvino_inferencer(_fixed_size_ir(tmp_path, 32, 48))
    fitting, other = tmp_path / "fitting.png", tmp_path / "other.png"
    Image.new("RGB", (48, 32), (255, 255, 255)).save(fitting)  # PIL sizes are (width, height)
    Image.new("RGB", (40, 30)).save(other)
    assert float(inferencer.predict(fitting).pred_score.reshape(-1)[0]) == pytest.approx(1.0)
    with pytest.raises(ImageSizeError) as refused:
        inferencer.predict(other)
    message = str(refused.value)
    assert str(other) in message and "30 x 40" in message and "32 x 48" in message
    assert "resize the image" in message and "--input_size" in message


#: run by the test below in a process of its own: in the pytest process, compiling these static-batch graphs
#: made a later test (test_demo) segfault in OpenVINO (3 of 8 suite runs on an AMD EPYC; every run with a gc.collect()
#: after each test; never with this test left out)
_BATCH_CHECKS = """
import sys
from pathlib import Path

import numpy as np

from anomalib_adapted_moe.deploy import BatchSizeError, openvino_inferencer

xml = Path(sys.argv[1])  # _fixed_size_ir's, 32 x 48
images = np.random.default_rng(0).random((2, 32, 48, 3), dtype=np.float32)
expected = images.mean(axis=(1, 2, 3))
free = openvino_inferencer(xml)
single, pairs = openvino_inferencer(xml, batch_size=1), openvino_inferencer(xml, batch_size=2)
assert free.input_blob.get_partial_shape()[0].is_dynamic
assert single.input_blob.get_partial_shape().to_shape() == [1, 3, 32, 48]
assert np.allclose(float(single.predict(images[0]).pred_score.reshape(-1)[0]), expected[0], rtol=1e-5)
assert np.allclose(float(free.predict(images[0]).pred_score.reshape(-1)[0]), expected[0], rtol=1e-5)
assert np.allclose(np.asarray(pairs.predict(images).pred_score).reshape(-1), expected, rtol=1e-5)
try:
    single.predict(images)
    raise AssertionError("a batch of 2 was not refused")
except BatchSizeError as error:
    message = str(error)
assert "holds 2 image(s)" in message and "batches of 1 (batch_size)" in message, message
assert "openvino_inferencer(path)" in message, message
try:
    openvino_inferencer(xml, batch_size=0)
    raise AssertionError("batch_size=0 was not refused")
except BatchSizeError as error:
    assert "positive number of images" in str(error), error
print("batch checks passed")
"""


def test_an_inferencer_compiled_for_one_batch_size_scores_as_the_free_one_and_refuses_other_batches(tmp_path) -> None:
    import subprocess
    import sys

    xml = _fixed_size_ir(tmp_path, 32, 48)  # written here, compiled only in the subprocess
    done = subprocess.run([sys.executable, "-c", _BATCH_CHECKS, str(xml)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "batch checks passed" in done.stdout, done.stdout + done.stderr


def test_outputs_with_a_folded_nodes_name_as_well_are_named_after_their_batch_field() -> None:
    """A static batch folds nodes and an output may carry two names; anomalib's own ``post_process`` takes either
    (set order), and ``NumpyImageBatch`` then refuses ``add_893``."""
    from anomalib_adapted_moe.deploy.inferencer import SizeCheckedInferencer

    names = [{"add_893", "pred_score"}, {"pred_label"}, {"anomaly_map", "add_930", "zzz"}, {"other_output"}]
    predictions = SimpleNamespace(names=lambda: names, to_tuple=lambda: (1, 2, 3, 4))
    processed = SizeCheckedInferencer.post_process(predictions)
    assert processed == {"pred_score": 1, "pred_label": 2, "anomaly_map": 3, "other_output": 4}

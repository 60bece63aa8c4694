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


def test_an_image_of_another_size_than_a_fixed_size_ir_names_the_file_both_sizes_and_the_fix(tmp_path) -> None:
    from PIL import Image

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


def test_compiled_models_are_cached_in_the_package_cache_and_never_in_the_working_directory(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """anomalib's ``OpenVINOInferencer`` creates ``./openvino_cache`` on every load: that fails in a read-only working
    directory (a service started in ``/``); ours caches in the package's cache folder."""
    import numpy as np

    from anomalib_adapted_moe.cache import CACHE_ENV
    from anomalib_adapted_moe.deploy import openvino_inferencer

    xml = _fixed_size_ir(tmp_path, 32, 48)
    working = tmp_path / "working"
    working.mkdir()
    monkeypatch.chdir(working)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    image = np.full((32, 48, 3), 0.25, np.float32)
    assert float(openvino_inferencer(xml).predict(image).pred_score.reshape(-1)[0]) == pytest.approx(0.25)
    assert list(working.iterdir()) == []
    assert list((tmp_path / "cache" / "openvino").glob("*.blob"))


def test_a_cache_folder_that_cannot_be_written_warns_with_the_fix_and_the_model_still_runs(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from anomalib_adapted_moe.cache import CACHE_ENV
    from anomalib_adapted_moe.deploy import openvino_inferencer

    xml = _fixed_size_ir(tmp_path, 32, 48)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a_file" / "cache"))  # a folder inside a file cannot be made
    with pytest.warns(UserWarning, match=f"{tmp_path / 'a_file' / 'cache' / 'openvino'} cannot be written") as warned:
        inferencer = openvino_inferencer(xml)
    assert f"set {CACHE_ENV} to a writable folder" in str(warned[0].message)
    image = np.full((32, 48, 3), 0.5, np.float32)
    assert float(inferencer.predict(image).pred_score.reshape(-1)[0]) == pytest.approx(0.5)


def test_a_missing_model_file_is_named_with_how_to_export_one(tmp_path) -> None:
    from anomalib_adapted_moe.deploy import openvino_inferencer

    for batch_size in (None, 1):  # both the plain load and the one that reads the IR to reshape it
        with pytest.raises(FileNotFoundError) as missing:
            openvino_inferencer(tmp_path / "model.xml", batch_size=batch_size)
        assert str(tmp_path / "model.xml") in str(missing.value) and "anomalib export" in str(missing.value)


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

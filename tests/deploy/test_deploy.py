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

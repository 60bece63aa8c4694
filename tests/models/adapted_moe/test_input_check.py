"""Tensors a user hands the model from Python: misread ones are refused with the fix, not scored without a word."""

from __future__ import annotations

import pytest
import torch
from anomalib.data import ImageBatch, ImageItem
from anomalib.engine import Engine
from torch.utils.data import DataLoader

from anomalib_adapted_moe.models.adapted_moe.input_check import ImageInputError, input_problem


def test_images_in_0_to_1_pass_and_misread_ones_are_named_with_their_fix() -> None:
    images = torch.rand(2, 3, 32, 32)
    assert input_problem(images) is None and input_problem(images * 1.2) is None  # a resize's overshoot
    assert "values up to" in input_problem(images * 255) and "divide 8-bit images by 255" in input_problem(images * 255)
    normalised = (images - 0.45) / 0.225
    assert "normalised already?" in input_problem(normalised)
    assert "images.float() / 255" in input_problem((images * 255).to(torch.uint8))
    assert "images.unsqueeze(0)" in input_problem(images[0])
    assert "images.unsqueeze(1) for grey images" in input_problem(torch.rand(8, 32, 32))
    bright = ((0.4 + 0.5 * images) - 0.485) / 0.229  # a bright texture normalised: its low is -0.37, not -2
    assert "normalised already?" in input_problem(bright)  # not "divide by 255"
    assert "NaN" in input_problem(torch.full((1, 3, 8, 8), float("nan")))
    assert input_problem("not a tensor") is None  # anomalib's to name


def test_a_model_whose_pre_processor_does_not_normalise_is_not_checked() -> None:
    """With ``pre_processor=False`` the datamodule may normalise: its images are what the model takes (a review:
    such a model's fit was refused)."""
    from conftest import tiny_adapted_moe

    model = tiny_adapted_moe(pre_processor=False).eval()
    normalised = (torch.rand(2, 3, 64, 64) - 0.485) / 0.229
    with torch.no_grad():
        assert model(normalised).pred_score.shape == (2,)


def test_the_model_refuses_0_to_255_images_from_python_and_through_the_engine(fitted_tiny, tmp_path) -> None:
    """A walkthrough's 0..255 images were scored (a good image 0.14 -> 0.69) by ``model(images)`` and by
    ``engine.predict`` with the user's own loader, without a word."""
    _, model, datamodule, checkpoint = fitted_tiny
    images = next(iter(datamodule.test_dataloader())).image[:2]
    model.eval()
    with torch.no_grad():
        scores = model(images).pred_score  # [0, 1]: scored
        with pytest.raises(ImageInputError, match=r"values up to 2\d\d.*Fix: divide 8-bit images by 255"):
            model(images * 255)
        with pytest.raises(ImageInputError, match=r"a tensor of shape \(3, .*images.unsqueeze\(0\)"):
            model(images[0])
    assert scores.shape == (2,)
    loader = DataLoader([ImageItem(image=image * 255) for image in images], batch_size=2, collate_fn=ImageBatch.collate)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
    with pytest.raises(ImageInputError, match="values up to"):
        engine.predict(model=model, dataloaders=loader, ckpt_path=checkpoint)

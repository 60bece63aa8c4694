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
    assert input_problem("not a tensor") is None  # anomalib's to name


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
        with pytest.raises(ImageInputError, match=r"a single image of shape \(3, "):
            model(images[0])
    assert scores.shape == (2,)
    loader = DataLoader([ImageItem(image=image * 255) for image in images], batch_size=2, collate_fn=ImageBatch.collate)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
    with pytest.raises(ImageInputError, match="values up to"):
        engine.predict(model=model, dataloaders=loader, ckpt_path=checkpoint)

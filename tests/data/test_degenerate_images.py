"""Degenerate images: blank frames give finite scores and maps, a too-small image a clear error, TTA never divides by 0.

The untrained-model case of constant images is in ``test_torch_model.py``; here a
fitted model (trained TTA statistics, anomalib's pre- and post-processor) and a
model trained on blank images.
"""

import pytest
import torch

from anomalib_adapted_moe.models.adapted_moe.training import TrainingSchedule, fit_expert_statistics, train_from_cache
from anomalib_adapted_moe.models.adapted_moe.tta import TestTimeAdaptation


def blank_images(size: int = 48) -> torch.Tensor:
    """Black, white, mid-grey, and an image with one constant channel: ``(4, 3, size, size)`` in [0, 1]."""
    torch.manual_seed(0)
    half_constant = torch.rand(3, size, size)
    half_constant[1] = 0.3
    return torch.stack(
        [torch.zeros(3, size, size), torch.ones(3, size, size), torch.full((3, size, size), 0.5), half_constant]
    )


def test_fitted_model_scores_blank_frames_finitely(fitted_tiny) -> None:
    """Through the whole exported chain (resize, normalise, model with TTA, post-processor)."""
    model = fitted_tiny[1].eval()
    with torch.no_grad():
        output = model(blank_images())
    assert output.pred_score.shape == (4,) and output.anomaly_map.shape == (4, 1, 64, 64)
    for field in (output.pred_score, output.anomaly_map):
        assert torch.isfinite(field).all()
        assert field.min() >= 0 and field.max() <= 1  # normalised by the post-processor


def test_an_image_smaller_than_the_blur_fails_clearly_and_the_pre_processor_avoids_it(fitted_tiny) -> None:
    model = fitted_tiny[1].eval()
    torch_model = model.model
    with pytest.raises(ValueError, match=r"at least 17x17 pixels .* got 16x16\. Fix: .*image_size"):
        torch_model(torch.rand(1, 3, 16, 16))
    with torch.no_grad():
        assert torch.isfinite(torch_model(torch.rand(1, 3, 17, 17)).anomaly_map).all()  # smaller than ResNet's field
        resized = model(torch.rand(1, 3, 8, 8))  # the pre-processor resizes to the trained 64x64
    assert resized.anomaly_map.shape == (1, 1, 64, 64) and torch.isfinite(resized.pred_score).all()


def test_tta_standardises_a_channel_that_is_constant_inside_one_image() -> None:
    """A constant channel (spatial std 0) maps to the expert's mean; the other channels get the expert's statistics."""
    tta = TestTimeAdaptation(num_experts=1, dim=2)
    tta.expert_mean.copy_(torch.tensor([[0.7, -1.0]]))
    tta.expert_std.copy_(torch.tensor([[2.0, 0.5]]))
    features = torch.stack([torch.full((4, 4), 3.0), torch.arange(16.0).reshape(4, 4)])[None]
    adapted = tta(features, torch.zeros(1, 1, dtype=torch.long))[0, 0]
    assert torch.isfinite(adapted).all()
    assert torch.allclose(adapted[0], torch.full((4, 4), 0.7))
    assert adapted[1].mean().item() == pytest.approx(-1.0, abs=1e-5)
    assert adapted[1].std(unbiased=False).item() == pytest.approx(0.5, abs=1e-4)


def test_a_subclass_of_blank_training_images_trains_and_scores_finitely() -> None:
    """Expert 1 sees only black frames: its within-image std is ~0, and nothing downstream divides by it."""
    from conftest import tiny_model

    model = tiny_model(num_experts=2, top_k=2)
    torch.manual_seed(1)
    images = torch.cat([torch.rand(3, 3, 64, 64), torch.zeros(3, 3, 64, 64)])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    features = model.patch_features(images).half()
    losses = train_from_cache(model, features, labels, TrainingSchedule(epochs=2, batch_size=3))
    fit_expert_statistics(model, features, labels)
    assert all(torch.isfinite(torch.tensor(value)) for value in losses.values())
    assert torch.isfinite(model.adaptation.expert_std).all()
    assert model.adaptation.expert_std[1].max() < 1e-3  # blank frames have no spatial spread to adapt to
    with torch.no_grad():
        output = model(torch.cat([blank_images(64), torch.rand(2, 3, 64, 64)]))
    assert torch.isfinite(output.pred_score).all() and torch.isfinite(output.anomaly_map).all()

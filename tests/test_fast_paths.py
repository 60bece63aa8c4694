"""The inference shortcuts compute what the plain versions do: separable blur, backbone cut after its last layer."""

import pytest
import timm
import torch
from anomalib.models.components import GaussianBlur2d, TimmFeatureExtractor

from anomalib_adapted_moe.models.adapted_moe.blur import SeparableGaussianBlur2d
from anomalib_adapted_moe.models.adapted_moe.features import prune_after_last_layer


@pytest.mark.parametrize("sigma", [4.0, 1.5])
def test_separable_blur_equals_anomalibs_2d_blur(sigma: float) -> None:
    kernel = 2 * int(4.0 * sigma + 0.5) + 1
    args = {"kernel_size": (kernel, kernel), "sigma": (sigma, sigma), "channels": 1}
    reference, separable = GaussianBlur2d(**args), SeparableGaussianBlur2d(**args)
    maps = torch.rand(3, 1, 48, 40) * 5
    assert torch.allclose(separable(maps), reference(maps), atol=1e-5)
    assert separable.state_dict().keys() == reference.state_dict().keys()  # checkpoints load either way


def test_pruned_backbone_gives_the_same_features_without_the_later_layers() -> None:
    torch.manual_seed(0)
    backbone = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    layers = ["blocks.2", "blocks.4"]
    whole = TimmFeatureExtractor(backbone=backbone, layers=layers, pre_trained=False).eval()
    cut = TimmFeatureExtractor(backbone=backbone, layers=layers, pre_trained=False).eval()
    prune_after_last_layer(cut.feature_extractor)

    def modules(extractor: TimmFeatureExtractor) -> list[str]:
        return [node.target for node in extractor.feature_extractor.graph.nodes if node.op == "call_module"]

    assert "conv_head" in modules(whole) and "conv_head" not in modules(cut)
    assert not any(name.startswith(("blocks.5", "blocks.6")) for name in modules(cut))
    images = torch.rand(2, 3, 64, 64)
    expected, got = whole(images), cut(images)
    assert all(torch.equal(got[layer], expected[layer]) for layer in layers)
    cut.train()  # torchvision's DualGraphModule switches graphs: both were cut
    assert "conv_head" not in modules(cut)
    assert cut.state_dict().keys() == whole.state_dict().keys()  # weights kept: checkpoints keep their keys
